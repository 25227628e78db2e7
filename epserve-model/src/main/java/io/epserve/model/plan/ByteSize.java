package io.epserve.model.plan;

import java.math.BigDecimal;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Memory sizes as people write them (24GiB, 80GB, 512MiB, 1073741824) and as the planner prints them. */
public final class ByteSize {
    private ByteSize() {}

    private static final Pattern SIZE = Pattern.compile("(\\d+(?:\\.\\d+)?)\\s*([a-zA-Z]*)");

    /**
     * Parses a size: plain bytes, or a number with a unit: KB, MB, GB, TB (powers of 1000), KiB,
     * MiB, GiB, TiB (powers of 1024), or K, M, G, T alone as the JVM's -Xmx reads them (powers of
     * 1024). Units are case-insensitive; fractions round down to whole bytes.
     */
    public static long parse(String s) {
        String t = s == null ? "" : s.trim();
        Matcher m = SIZE.matcher(t);
        if (!m.matches()) {
            throw bad(s);
        }
        long unit = switch (m.group(2).toLowerCase(Locale.ROOT)) {
            case "", "b" -> 1L;
            case "kb" -> 1000L;
            case "mb" -> 1000L * 1000;
            case "gb" -> 1000L * 1000 * 1000;
            case "tb" -> 1000L * 1000 * 1000 * 1000;
            case "k", "kib" -> 1L << 10;
            case "m", "mib" -> 1L << 20;
            case "g", "gib" -> 1L << 30;
            case "t", "tib" -> 1L << 40;
            default -> throw bad(s);
        };
        BigDecimal bytes = new BigDecimal(m.group(1)).multiply(BigDecimal.valueOf(unit));
        if (bytes.compareTo(BigDecimal.valueOf(Long.MAX_VALUE)) > 0) {
            throw new IllegalArgumentException("size '" + s + "' is too large");
        }
        return bytes.longValue();
    }

    private static IllegalArgumentException bad(String s) {
        return new IllegalArgumentException("bad size '" + s + "': use bytes, or a number with KB, MB, GB, TB (powers of 1000) "
                + "or KiB, MiB, GiB, TiB (powers of 1024), e.g. 24GiB, 80GB, 512MiB");
    }

    /** Binary units with two decimals: 512 B, 9.00 MiB, 86.99 GiB. */
    public static String format(long bytes) {
        if (bytes < 1024) {
            return bytes + " B";
        }
        String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return String.format(Locale.ROOT, "%.2f %s", v, units[u]);
    }

    /** Parameter counts: 46.70B, 311.16M, 24.6K, 512. */
    public static String count(long n) {
        if (n >= 1_000_000_000L) {
            return String.format(Locale.ROOT, "%.2fB", n / 1e9);
        }
        if (n >= 1_000_000L) {
            return String.format(Locale.ROOT, "%.2fM", n / 1e6);
        }
        if (n >= 10_000L) {
            return String.format(Locale.ROOT, "%.1fK", n / 1e3);
        }
        return Long.toString(n);
    }
}
