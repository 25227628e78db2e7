package io.epserve.server;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/** The live view's files (plain HTML, JS and CSS in the jar: no build step, no CDN), read once. */
final class StaticResources {
    record Resource(String contentType, byte[] bytes) {}

    private static final Map<String, Resource> CACHE = new ConcurrentHashMap<>();

    private StaticResources() {}

    static Resource get(String name) {
        return CACHE.computeIfAbsent(name, n -> {
            try (InputStream in = StaticResources.class.getResourceAsStream("view/" + n)) {
                if (in == null) {
                    throw new IllegalStateException("missing resource view/" + n);
                }
                String type = n.endsWith(".html") ? "text/html; charset=utf-8"
                        : n.endsWith(".js") ? "text/javascript; charset=utf-8"
                        : n.endsWith(".css") ? "text/css; charset=utf-8" : "application/octet-stream";
                return new Resource(type, in.readAllBytes());
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
    }
}
