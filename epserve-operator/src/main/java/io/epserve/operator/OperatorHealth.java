package io.epserve.operator;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.javaoperatorsdk.operator.RuntimeInfo;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/**
 * {@code GET /healthz} for the kubelet: 200 once the operator has started and every informer is watching, else 503
 * naming the unhealthy event sources (an informer that lost its watch for good leaves the operator blind, and a
 * restart is the cure). The JDK's own HTTP server: one endpoint needs no framework.
 */
public final class OperatorHealth implements AutoCloseable {
    /** The port the operator Deployment probes. */
    public static final int PORT = 8081;

    private final HttpServer server;

    public OperatorHealth(RuntimeInfo runtime, InetSocketAddress address) throws IOException {
        server = HttpServer.create(address, 0);
        server.createContext("/healthz", exchange -> {
            if (!runtime.isStarted()) {
                respond(exchange, 503, "not started");
            } else if (!runtime.allEventSourcesAreHealthy()) {
                respond(exchange, 503, "unhealthy event sources: " + runtime.unhealthyEventSources().keySet());
            } else {
                respond(exchange, 200, "ok");
            }
        });
        server.start();
    }

    public int port() {
        return server.getAddress().getPort();
    }

    private static void respond(HttpExchange exchange, int status, String body) throws IOException {
        byte[] bytes = (body + "\n").getBytes(StandardCharsets.UTF_8);
        exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    @Override
    public void close() {
        server.stop(0);
    }
}
