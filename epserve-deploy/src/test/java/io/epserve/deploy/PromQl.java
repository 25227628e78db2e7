package io.epserve.deploy;

import java.util.Locale;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The metric names a PromQL expression reads, found lexically: string literals, label matchers
 * ({@code {...}}), range and offset brackets and grouping clauses ({@code by (...)}, {@code on (...)}
 * and the like) are removed; what remains that is an identifier, not a function call, keyword or
 * Grafana variable is a metric name. Enough for the expressions dashboards and alert rules hold.
 */
final class PromQl {
    private static final Pattern STRING = Pattern.compile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`");
    private static final Pattern BRACES = Pattern.compile("\\{[^{}]*}");
    private static final Pattern BRACKETS = Pattern.compile("\\[[^\\[\\]]*]");
    private static final Pattern GROUPING = Pattern.compile(
            "\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^()]*\\)", Pattern.CASE_INSENSITIVE);
    private static final Pattern VARIABLE = Pattern.compile("\\$\\{[^}]*}|\\$\\w+");
    private static final Pattern IDENT = Pattern.compile("(?<![\\w.])([a-zA-Z_:][\\w:]*)(\\s*\\()?");
    private static final Set<String> KEYWORDS = Set.of("and", "or", "unless", "bool", "offset", "by", "without", "on",
            "ignoring", "group_left", "group_right", "inf", "nan", "atan2");

    private PromQl() {}

    static Set<String> metricNames(String expr) {
        String s = STRING.matcher(expr).replaceAll(" ");
        s = BRACES.matcher(s).replaceAll(" ");
        s = BRACKETS.matcher(s).replaceAll(" ");
        s = GROUPING.matcher(s).replaceAll(" ");
        s = VARIABLE.matcher(s).replaceAll(" ");
        Set<String> names = new TreeSet<>();
        Matcher m = IDENT.matcher(s);
        while (m.find()) {
            String id = m.group(1);
            boolean call = m.group(2) != null;
            if (!call && !KEYWORDS.contains(id.toLowerCase(Locale.ROOT))) {
                names.add(id);
            }
        }
        return names;
    }

    /** The metric names of a Grafana template query such as {@code label_values(metric, label)}. */
    static Set<String> templateQueryNames(String query) {
        Matcher m = Pattern.compile("^\\s*(label_values|query_result)\\s*\\((.*)\\)\\s*$", Pattern.DOTALL).matcher(query);
        if (!m.matches()) {
            return metricNames(query);
        }
        String inner = m.group(2);
        if (m.group(1).equals("label_values")) {
            int comma = inner.lastIndexOf(',');
            return comma < 0 ? Set.of() : metricNames(inner.substring(0, comma));
        }
        return metricNames(inner);
    }
}
