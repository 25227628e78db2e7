package io.epserve.operator.status;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import io.epserve.operator.status.FrontendReport.Source;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The probe against real HTTP servers on loopback that answer as a frontend would. */
class HttpFrontendProbeTest {
    private static final String METRICS = """
            # TYPE epserve_placement_epoch gauge
            epserve_placement_epoch 4
            epserve_placement_balancedness{layer="0"} 0.9
            epserve_placement_balancedness{layer="1"} 0.7
            epserve_worker_state{worker="w0",state="serving"} 1
            epserve_worker_state{worker="w0",state="suspect"} 0
            epserve_worker_state{worker="w1",state="serving"} 0
            epserve_worker_state{worker="w1",state="suspect"} 1
            epserve_expert_routed_tokens_total{layer="0",expert="0"} 100
            epserve_expert_routed_tokens_total{layer="0",expert="1"} 50
            """;

    private final List<HttpServer> servers = new ArrayList<>();
    private final HttpFrontendProbe probe = new HttpFrontendProbe(Duration.ofSeconds(2));

    @AfterEach
    void stop() {
        servers.forEach(s -> s.stop(0));
    }

    /** A frontend answering each path with the given body (200); any other path is a 404. */
    private URI frontend(Map<String, String> bodies) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        server.createContext("/", exchange -> {
            String body = bodies.get(exchange.getRequestURI().getPath());
            byte[] bytes = (body == null ? "not found" : body).getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(body == null ? 404 : 200, bytes.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(bytes);
            }
        });
        server.start();
        servers.add(server);
        return URI.create("http://127.0.0.1:" + server.getAddress().getPort());
    }

    @Test
    void readsMetricsWhenThePlacementEndpointsAreAbsent() throws IOException {
        FrontendReport r = probe.observe(List.of(frontend(Map.of("/metrics", METRICS))));
        assertThat(r).isEqualTo(new FrontendReport(Source.METRICS, OptionalLong.of(4), OptionalDouble.of(0.7),
                OptionalInt.of(1), OptionalDouble.of(150)));
    }

    @Test
    void prefersThePlacementEndpoints() throws IOException {
        URI f = frontend(Map.of("/metrics", METRICS,
                "/v1/epserve/placement", "{\"epoch\": 9, \"layers\": []}",
                "/v1/epserve/workers", "{\"workers\": [{\"id\":\"w0\",\"state\":\"serving\"},"
                        + "{\"id\":\"w1\",\"state\":\"SERVING\"},{\"id\":\"w2\",\"state\":\"draining\"}]}"));
        FrontendReport r = probe.observe(List.of(f));
        assertThat(r.source()).isEqualTo(Source.PLACEMENT_API);
        assertThat(r.placementEpoch()).hasValue(9);
        assertThat(r.workersServing()).hasValue(2);
        assertThat(r.balancedness()).hasValue(0.7);
    }

    @Test
    void malformedPlacementJsonFallsBackToMetrics() throws IOException {
        URI f = frontend(Map.of("/metrics", METRICS, "/v1/epserve/placement", "{not json",
                "/v1/epserve/workers", "[]"));
        FrontendReport r = probe.observe(List.of(f));
        assertThat(r.source()).isEqualTo(Source.METRICS);
        assertThat(r.placementEpoch()).hasValue(4);
    }

    @Test
    void combinesFrontends() throws IOException {
        URI a = frontend(Map.of("/metrics", METRICS));
        URI b = frontend(Map.of("/metrics", """
                epserve_placement_epoch 3
                epserve_placement_balancedness{layer="0"} 0.95
                epserve_worker_up{worker="w0"} 1
                epserve_worker_up{worker="w1"} 1
                epserve_expert_routed_tokens_total{layer="0",expert="0"} 1000
                """));
        FrontendReport r = probe.observe(List.of(a, b));
        assertThat(r).isEqualTo(new FrontendReport(Source.METRICS, OptionalLong.of(3), OptionalDouble.of(0.7),
                OptionalInt.of(1), OptionalDouble.of(1150)));
    }

    @Test
    void aSilentFrontendLeavesNoRateAndNoneAnsweringIsUnreachable() throws IOException {
        URI answering = frontend(Map.of("/metrics", METRICS));
        URI closed;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            closed = URI.create("http://127.0.0.1:" + s.getLocalPort());
        }
        FrontendReport partial = probe.observe(List.of(answering, closed));
        assertThat(partial.source()).isEqualTo(Source.METRICS);
        assertThat(partial.placementEpoch()).hasValue(4);
        assertThat(partial.routedTokens()).as("a sum over some frontends would read as a drop in load").isEmpty();

        assertThat(probe.observe(List.of(closed))).isEqualTo(FrontendReport.unreachable());
        assertThat(probe.observe(List.of())).isEqualTo(FrontendReport.unreachable());
        assertThat(probe.observe(List.of(frontend(Map.of())))).as("404 on /metrics").isEqualTo(FrontendReport.unreachable());
    }
}
