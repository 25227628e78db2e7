package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** A Readiness source (remote expert workers) decides /ready and the readiness gauges; /health ignores it. */
class ReadinessTest {
    /** A source the test sets by hand: which workers are up. */
    static class Workers implements Readiness {
        final Map<String, Boolean> up = new LinkedHashMap<>(Map.of("10.0.0.1:7070", true, "10.0.0.2:7070", true));

        @Override
        public synchronized String notReadyReason() {
            return up.entrySet().stream().filter(e -> !e.getValue()).map(e -> "expert worker " + e.getKey() + " is down")
                    .findFirst().orElse(null);
        }

        @Override
        public synchronized Map<String, Boolean> workersUp() {
            return Map.copyOf(up);
        }

        synchronized void set(String worker, boolean isUp) {
            up.put(worker, isUp);
        }
    }

    @Test
    void readyAndTheGaugesFollowTheExpertLayerWhileHealthStaysUp() throws Exception {
        try (TestStack s = TestStack.start(TestStack.ENGINE, true, true)) {
            Workers workers = new Workers();
            s.server.readiness(workers);
            assertThat(s.get("/ready").statusCode()).isEqualTo(200);
            String metrics = s.get("/metrics").body();
            assertThat(metrics).contains("epserve_ready 1.0").contains("epserve_worker_up{worker=\"10.0.0.2:7070\"} 1.0");

            workers.set("10.0.0.2:7070", false);
            var ready = s.get("/ready");
            assertThat(ready.statusCode()).isEqualTo(503);
            JsonNode body = TestStack.JSON.readTree(ready.body());
            assertThat(body.path("reason").asText()).isEqualTo("expert worker 10.0.0.2:7070 is down");
            assertThat(s.get("/health").statusCode()).isEqualTo(200);
            metrics = s.get("/metrics").body();
            assertThat(metrics).contains("epserve_ready 0.0").contains("epserve_worker_up{worker=\"10.0.0.2:7070\"} 0.0")
                    .contains("epserve_worker_up{worker=\"10.0.0.1:7070\"} 1.0");

            workers.set("10.0.0.2:7070", true);
            assertThat(s.get("/ready").statusCode()).isEqualTo(200);
            assertThat(s.get("/metrics").body()).contains("epserve_ready 1.0");
        }
    }

    @Test
    void whereTheFrontendComputesForDownWorkersGenerationsGoOnWhileReadySaysSo() throws Exception {
        try (TestStack s = TestStack.start(TestStack.ENGINE, true, true)) {
            Workers workers = new Workers() {
                @Override
                public boolean servesWhileWorkersDown() {
                    return true;
                }
            };
            s.server.readiness(workers);
            workers.set("10.0.0.2:7070", false);
            assertThat(s.get("/ready").statusCode()).as("a worker is down").isEqualTo(503);
            var r = s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2));
            assertThat(r.statusCode()).as("the request is served anyway: %s", r.body()).isEqualTo(200);
        }
    }

    @Test
    void withoutFailoverADownWorkerRefusesGenerations() throws Exception {
        try (TestStack s = TestStack.start(TestStack.ENGINE, true, true)) {
            Workers workers = new Workers();
            s.server.readiness(workers);
            workers.set("10.0.0.2:7070", false);
            var r = s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2));
            assertThat(r.statusCode()).isEqualTo(503);
            assertThat(r.body()).contains("expert worker 10.0.0.2:7070 is down");
        }
    }
}
