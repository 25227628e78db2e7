package io.epserve.rpc;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * The shared secret of a worker cluster: the worker ({@code --auth-secret-file}) refuses every
 * expert-service call that does not carry it, the frontends ({@code --worker-secret-file}) send it
 * on every call as {@code authorization: Bearer <secret>}. Read from a file (one line; surrounding
 * whitespace ignored) so it never appears on a command line or in {@code ps}. Never printed.
 */
public final class WorkerSecret {
    /** Shorter secrets are refused: guessable. */
    public static final int MIN_LENGTH = 16;

    private final String value;
    private final byte[] headerDigest;

    private WorkerSecret(String value) {
        this.value = value;
        this.headerDigest = sha256(headerValue());
    }

    /** Reads a secret file; the message names the file and the option that gave it. */
    public static WorkerSecret fromFile(Path file, String option) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8).strip();
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(option + " " + file + ": no such file");
        } catch (IOException e) {
            throw new UncheckedIOException(option + " " + file + ": cannot read: " + e.getMessage(), e);
        }
        try {
            return of(text);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException(option + " " + file + ": " + e.getMessage());
        }
    }

    /** A secret given directly (tests); the same rules as a file's. */
    public static WorkerSecret of(String secret) {
        if (secret.length() < MIN_LENGTH) {
            throw new IllegalArgumentException("the secret must be at least " + MIN_LENGTH + " characters, got " + secret.length());
        }
        for (int i = 0; i < secret.length(); i++) {
            char c = secret.charAt(i);
            if (c < 0x21 || c > 0x7e) {
                throw new IllegalArgumentException("the secret must be one line of printable ASCII without spaces");
            }
        }
        return new WorkerSecret(secret);
    }

    /** What the frontend sends in the authorization header. */
    String headerValue() {
        return "Bearer " + value;
    }

    /**
     * Whether an authorization header carries this secret. Compares SHA-256 digests with
     * {@link MessageDigest#isEqual} (constant time): neither the secret's length nor how many
     * leading bytes matched shows in the time taken.
     */
    boolean matches(String header) {
        return header != null && MessageDigest.isEqual(headerDigest, sha256(header));
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this JVM has no SHA-256", e);
        }
    }

    @Override
    public String toString() {
        return "WorkerSecret[redacted]";
    }
}
