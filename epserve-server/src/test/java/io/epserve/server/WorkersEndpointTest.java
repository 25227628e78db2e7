package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpClient;
import java.util.List;
import org.junit.jupiter.api.Test;

/** GET /v1/epserve/workers and the epserve_worker_state gauge from a worker table the test sets by hand. */
class WorkersEndpointTest {
    static final String KEY = "workers-endpoint-key";

    static final class Table implements WorkerTable {
        volatile Snapshot now = new Snapshot(3, List.of(
                new Worker("10.0.0.1:7070", "rack-1", "serving", 4, 12, 0.84, 0.625, 120, 0, 35.5, true, 12,
                        "2026-12-03T15:00:00Z", "", false),
                new Worker("10.0.0.2:7070", "", "dead", 0, 0, -1, 0, 7, 2, -1, false, 0, "2026-12-03T15:01:00Z",
                        "unreachable: UNAVAILABLE", true)));

        @Override
        public Snapshot snapshot() {
            return now;
        }
    }

    static HttpResponse<String> get(TestStack s, String path, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(s.uri(path)).timeout(TestStack.TIMEOUT);
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return HttpClient.newHttpClient().send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void theTableAsJsonBehindTheKeyAndOneGaugePerWorkerAndState() throws Exception {
        try (TestStack s = TestStack.start(b -> b.apiKeys(List.of(KEY)))) {
            JsonNode empty = TestStack.JSON.readTree(get(s, "/v1/epserve/workers", KEY).body());
            assertThat(empty.path("epoch").asLong()).as("in-process experts: no workers").isZero();
            assertThat(empty.path("workers").size()).isZero();

            Table table = new Table();
            s.server.workers(table);
            assertThat(get(s, "/v1/epserve/workers", null).statusCode()).isEqualTo(401);
            HttpResponse<String> r = get(s, "/v1/epserve/workers", KEY);
            assertThat(r.statusCode()).isEqualTo(200);
            JsonNode body = TestStack.JSON.readTree(r.body());
            assertThat(body.path("epoch").asLong()).isEqualTo(3);
            JsonNode w = body.path("workers").get(0);
            assertThat(w.path("address").asText()).isEqualTo("10.0.0.1:7070");
            assertThat(w.path("host").asText()).isEqualTo("rack-1");
            assertThat(w.path("state").asText()).isEqualTo("serving");
            assertThat(w.path("experts").asInt()).isEqualTo(12);
            assertThat(w.path("rtt_ms").asDouble()).isEqualTo(0.84);
            assertThat(w.path("load").asDouble()).isEqualTo(0.625);
            assertThat(w.path("calls").asLong()).isEqualTo(120);
            assertThat(w.path("load_ms").asDouble()).isEqualTo(35.5);
            assertThat(w.path("load_from_cache").asBoolean()).isTrue();
            assertThat(w.path("since").asText()).isEqualTo("2026-12-03T15:00:00Z");
            JsonNode dead = body.path("workers").get(1);
            assertThat(dead.path("state").asText()).isEqualTo("dead");
            assertThat(dead.path("reason").asText()).contains("UNAVAILABLE");
            assertThat(dead.path("joined").asBoolean()).isTrue();

            String metrics = get(s, "/metrics", KEY).body();
            assertThat(metrics).contains("epserve_worker_state{state=\"serving\",worker=\"10.0.0.1:7070\"} 1.0")
                    .contains("epserve_worker_state{state=\"dead\",worker=\"10.0.0.1:7070\"} 0.0")
                    .contains("epserve_worker_state{state=\"dead\",worker=\"10.0.0.2:7070\"} 1.0")
                    .contains("epserve_worker_state{state=\"joining\",worker=\"10.0.0.2:7070\"} 0.0");
            assertThat(metrics.lines().filter(l -> l.startsWith("epserve_worker_state{")).count())
                    .as("five states per worker").isEqualTo(10);
        }
    }
}
