package io.epserve.server;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.List;

/**
 * The API keys the server accepts, as {@code Authorization: Bearer KEY} (as OpenAI's API takes
 * them). Keys are compared in constant time, so the time of a refusal tells nothing about how
 * much of a key was right.
 */
public final class ApiKeys {
    private static final String BEARER = "Bearer ";
    private final byte[][] keys;

    ApiKeys(List<String> keys) {
        this.keys = keys.stream().map(k -> k.getBytes(StandardCharsets.US_ASCII)).toArray(byte[][]::new);
    }

    /** True when requests must carry a key. */
    boolean required() {
        return keys.length > 0;
    }

    /** Whether an {@code Authorization} header value (or null) carries one of the keys. */
    boolean accepts(String authorization) {
        if (authorization == null || !authorization.regionMatches(true, 0, BEARER, 0, BEARER.length())) {
            return false;
        }
        byte[] given = authorization.substring(BEARER.length()).strip().getBytes(StandardCharsets.US_ASCII);
        boolean ok = false;
        for (byte[] k : keys) {
            ok |= MessageDigest.isEqual(k, given); // no early exit: every key is compared
        }
        return ok;
    }

    /** The keys of a file: one per line; blank lines and lines starting with {@code #} are skipped. */
    public static List<String> readFile(Path file) {
        try {
            return Files.readAllLines(file, StandardCharsets.UTF_8).stream().map(String::strip)
                    .filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the API key file " + file + ": " + e.getMessage(), e);
        }
    }
}
