package io.epserve.operator;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** The version this operator was built as, from a resource Maven filters; it names the default image tag. */
final class OperatorVersion {
    private static final String VERSION = load();

    private OperatorVersion() {
    }

    /** e.g. {@code 0.1.0}: a development build's {@code -SNAPSHOT} is dropped, as images are tagged by release. */
    static String get() {
        return VERSION;
    }

    private static String load() {
        try (InputStream in = OperatorVersion.class.getResourceAsStream("/epserve-operator.properties")) {
            if (in == null) {
                throw new IllegalStateException("epserve-operator.properties is missing from the operator's jar");
            }
            Properties p = new Properties();
            p.load(in);
            return p.getProperty("version").replace("-SNAPSHOT", "");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
