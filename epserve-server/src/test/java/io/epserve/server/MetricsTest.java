package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.RoutedTokens;
import io.epserve.moe.RoutingResult;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** /metrics after real requests: names, types and values that follow from what was sent. */
class MetricsTest {
    private static double sumOf(String text, String prefix) {
        double sum = 0;
        for (String line : text.split("\n")) {
            if (line.startsWith(prefix)) {
                sum += Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return sum;
    }

    @Test
    void metricsLiveViewAndDispatchStatisticsReadTheOneCountOfRoutedTokens() throws Exception {
        // a stack of its own: nothing else routes tokens between the three readings
        try (TestStack s = TestStack.start(b -> b)) {
            HttpResponse<String> r = s.post("/v1/completions", Map.of("prompt", "Count me once", "max_tokens", 5, "seed", 3));
            assertThat(r.statusCode()).isEqualTo(200);
            TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
            RoutedTokens routed = s.experts.dispatcher().routedTokens();
            ExpertLoad total = routed.total();
            String metrics = s.get("/metrics").body();
            JsonNode live = s.server.live.stats().tick();
            // what `--stats` prints: one line per sparse layer with its tokens per expert
            List<String> statsLines = s.experts.dispatcher().describeStats().stream().filter(l -> l.contains("tokens per expert")).toList();
            int[] sparse = s.served.layout().sparseLayers();
            assertThat(statsLines).hasSize(sparse.length);
            long all = 0;
            for (int i = 0; i < sparse.length; i++) {
                int layer = sparse[i];
                String[] cli = statsLines.get(i).substring(statsLines.get(i).indexOf(':') + 1).trim().split(" ");
                for (int e = 0; e < s.served.layout().experts(); e++) {
                    long n = total.tokens(layer, e);
                    all += n;
                    assertThat(TestStack.metric(metrics, "epserve_expert_routed_tokens_total{expert=\"" + e + "\",layer=\"" + layer + "\"}"))
                            .as("/metrics, layer %d expert %d", layer, e).isEqualTo((double) n);
                    assertThat(live.get("routed_total").get(i).get(e).asLong()).as("live view, layer %d expert %d", layer, e).isEqualTo(n);
                    assertThat(Long.parseLong(cli[e])).as("--stats, layer %d expert %d", layer, e).isEqualTo(n);
                }
            }
            assertThat(all).as("the request was counted").isPositive();
            // /metrics has no count of its own: a routing recorded straight into the dispatcher's count shows there
            int layer = sparse[0];
            String sample = "epserve_expert_routed_tokens_total{expert=\"0\",layer=\"" + layer + "\"}";
            routed.record(layer, new RoutingResult(1, 1, new int[] {0}, new float[] {1}));
            assertThat(TestStack.metric(s.get("/metrics").body(), sample)).isEqualTo((double) total.tokens(layer, 0) + 1);
        }
    }

    @Test
    void theSecondRequestWithALongSharedPromptIsAPrefixCacheHit() throws Exception {
        TestStack s = TestStack.shared();
        String prompt = "A shared system prompt that every request of this test repeats word for word. ".repeat(8);
        String before = s.get("/metrics").body();
        HttpResponse<String> first = s.post("/v1/completions", Map.of("prompt", prompt + "First?", "max_tokens", 3, "seed", 1));
        assertThat(first.statusCode()).isEqualTo(200);
        int promptTokens = TestStack.JSON.readTree(first.body()).get("usage").get("prompt_tokens").asInt();
        String between = s.get("/metrics").body();
        HttpResponse<String> second = s.post("/v1/completions", Map.of("prompt", prompt + "Second?", "max_tokens", 3, "seed", 1));
        assertThat(second.statusCode()).isEqualTo(200);
        String after = s.get("/metrics").body();
        assertThat(delta(before, between, "epserve_prefix_cache_queried_tokens_total")).isEqualTo(promptTokens);
        int blockSize = s.engine.stats().kvBlockSize();
        assertThat(promptTokens).as("the shared part spans several blocks").isGreaterThan(3 * blockSize);
        assertThat(delta(between, after, "epserve_prefix_cache_hit_tokens_total")).as("whole blocks of the shared part")
                .isPositive().matches(d -> d % blockSize == 0);
        assertThat(after).contains("# TYPE epserve_prefix_cache_hit_tokens_total counter", "# TYPE epserve_prefix_cache_blocks gauge");
    }

    @Test
    void metricsFollowTheRequests() throws Exception {
        TestStack s = TestStack.shared();
        TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
        String before = s.get("/metrics").body();

        // one request alone: its routed tokens are exact
        HttpResponse<String> one = s.post("/v1/completions", Map.of("prompt", "The experts", "max_tokens", 9, "ignore_eos", true, "seed", 1));
        assertThat(one.statusCode()).isEqualTo(200);
        JsonNode usage = TestStack.JSON.readTree(one.body()).get("usage");
        int p = usage.get("prompt_tokens").asInt();
        int g = usage.get("completion_tokens").asInt();
        assertThat(g).isEqualTo(9);
        String afterOne = s.get("/metrics").body();
        int topK = 2;
        for (int layer : s.served.layout().sparseLayers()) {
            String prefix = "epserve_expert_routed_tokens_total{expert=";
            double delta = 0;
            for (int e = 0; e < s.served.layout().experts(); e++) {
                String sample = "epserve_expert_routed_tokens_total{expert=\"" + e + "\",layer=\"" + layer + "\"}";
                delta += TestStack.metric(afterOne, sample) - TestStack.metric(before, sample);
            }
            assertThat(delta).as("layer %d: (prompt + generated - 1) tokens × top-%d\n%s", layer, topK, prefix)
                    .isEqualTo((double) (p + g - 1) * topK);
        }
        assertThat(sumOf(afterOne, "epserve_worker_routed_tokens_total{") - sumOf(before, "epserve_worker_routed_tokens_total{"))
                .as("worker loads add up to the expert counts")
                .isEqualTo(sumOf(afterOne, "epserve_expert_routed_tokens_total{") - sumOf(before, "epserve_expert_routed_tokens_total{"));

        // a stream and a chat
        HttpResponse<String> stream = s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 5, "stream", true, "ignore_eos", true));
        assertThat(TestStack.events(stream.body())).isNotEmpty();
        assertThat(s.post("/v1/chat/completions", Map.of("messages", new Object[] {Map.of("role", "user", "content", "x")},
                "max_tokens", 4, "ignore_eos", true)).statusCode()).isEqualTo(200);
        assertThat(s.post("/v1/completions", Map.of("prompt", "hi", "n", 3)).statusCode()).isEqualTo(400);

        HttpResponse<String> m = s.get("/metrics");
        assertThat(m.statusCode()).isEqualTo(200);
        assertThat(m.headers().firstValue("content-type").orElseThrow()).startsWith("text/plain");
        String after = m.body();
        assertThat(delta(before, after, "epserve_requests_total{endpoint=\"completions\",status=\"200\"}")).isEqualTo(2);
        assertThat(delta(before, after, "epserve_requests_total{endpoint=\"chat_completions\",status=\"200\"}")).isEqualTo(1);
        assertThat(delta(before, after, "epserve_requests_total{endpoint=\"completions\",status=\"400\"}")).isEqualTo(1);
        assertThat(delta(before, after, "epserve_requests_finished_total{reason=\"length\"}")).isEqualTo(3);
        assertThat(delta(before, after, "epserve_generation_tokens_total")).isEqualTo(9 + 5 + 4);
        assertThat(delta(before, after, "epserve_prompt_tokens_total")).isGreaterThanOrEqualTo(p + 2);
        for (String h : new String[] {"epserve_time_to_first_token_seconds", "epserve_request_duration_seconds"}) {
            assertThat(delta(before, after, h + "_count")).as(h).isEqualTo(3);
            assertThat(after).contains("# TYPE " + h + " histogram").contains(h + "_bucket{le=\"+Inf\"}").contains(h + "_sum");
        }
        assertThat(delta(before, after, "epserve_time_per_output_token_seconds_count")).isEqualTo(3);
        assertThat(delta(before, after, "epserve_step_batch_size_count")).isPositive();
        assertThat(after).contains("# TYPE epserve_running_requests gauge", "# TYPE epserve_waiting_requests gauge",
                "# TYPE epserve_kv_blocks_used gauge", "# TYPE epserve_prompt_tokens_total counter",
                "# TYPE epserve_expert_routed_tokens_total counter", "# TYPE epserve_expert_load_imbalance gauge");
        assertThat(TestStack.metric(after, "epserve_kv_blocks_capacity")).isEqualTo(s.engine.stats().kvBlocksTotal());
        assertThat(TestStack.metric(after, "epserve_kv_blocks_used")).isZero();
        assertThat(TestStack.metric(after, "epserve_running_requests")).isZero();
        for (String w : s.served.layout().workers()) {
            assertThat(after).contains("epserve_worker_routed_tokens_total{worker=\"" + w + "\"}");
        }

        // the imbalance gauge reads the live view's window, sampled once a second
        TestStack.await("a sampled imbalance", () -> {
            try {
                return s.metric("epserve_expert_load_imbalance{layer=\"0\"}") >= 1.0;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        assertThat(s.metric("epserve_expert_load_imbalance{layer=\"1\"}")).isBetween(1.0, 4.0);
    }

    private static double delta(String before, String after, String sample) {
        return TestStack.metric(after, sample) - TestStack.metric(before, sample);
    }
}
