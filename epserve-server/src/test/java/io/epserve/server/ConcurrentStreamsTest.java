package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * 32 concurrent streams: the engine batched them (some steps ran many sequences), and each
 * stream is complete and, token for token, what the same request gives alone with the same seed.
 */
class ConcurrentStreamsTest {
    static final int N = 32;
    static final int MAX_TOKENS = 24;

    /** A stream's outcome: token ids (return_token_ids), text, finish reason, usage. */
    record Streamed(List<Integer> ids, String text, String finish, int completionTokens) {}

    private static Map<String, Object> request(int i) {
        return Map.of("prompt", "Request " + i + " asks the experts " + "about ".repeat(i % 5), "max_tokens", MAX_TOKENS,
                "temperature", 0.9, "top_p", 0.95, "seed", 1000 + i, "ignore_eos", true, "stream", true,
                "stream_options", Map.of("include_usage", true), "return_token_ids", true);
    }

    private static Streamed stream(TestStack s, int i) throws Exception {
        HttpResponse<String> r = s.post("/v1/completions", request(i));
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        assertThat(r.headers().firstValue("content-type").orElseThrow()).startsWith("text/event-stream");
        List<Integer> ids = new ArrayList<>();
        StringBuilder text = new StringBuilder();
        String finish = null;
        int completion = -1;
        for (JsonNode e : TestStack.events(r.body())) {
            if (e.hasNonNull("usage")) {
                completion = e.get("usage").get("completion_tokens").asInt();
            }
            for (JsonNode c : e.get("choices")) {
                text.append(c.get("text").asText());
                c.get("token_ids").forEach(t -> ids.add(t.asInt()));
                if (c.hasNonNull("finish_reason")) {
                    assertThat(finish).as("one finish_reason").isNull();
                    finish = c.get("finish_reason").asText();
                }
            }
        }
        return new Streamed(ids, text.toString(), finish, completion);
    }

    /** Steps that ran more than {@code n} sequences, from the histogram's buckets. */
    private static double stepsAbove(String metrics, int n) {
        double count = TestStack.metric(metrics, "epserve_step_batch_size_count");
        double le = Math.max(TestStack.metric(metrics, "epserve_step_batch_size_bucket{le=\"" + n + ".0\"}"),
                TestStack.metric(metrics, "epserve_step_batch_size_bucket{le=\"" + n + "\"}"));
        return count - le;
    }

    @Test
    void thirtyTwoConcurrentStreamsAreBatchedAndEqualTheirSoloRuns() throws Exception {
        TestStack s = TestStack.shared();
        List<Streamed> alone = new ArrayList<>();
        for (int i = 0; i < N; i++) {
            alone.add(stream(s, i));
        }
        TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
        String before = s.get("/metrics").body();

        List<Future<Streamed>> together = new ArrayList<>();
        CountDownLatch go = new CountDownLatch(1);
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < N; i++) {
                int idx = i;
                together.add(pool.submit(() -> {
                    go.await();
                    return stream(s, idx);
                }));
            }
            go.countDown();
            for (int i = 0; i < N; i++) {
                Streamed t = together.get(i).get(TestStack.TIMEOUT.toSeconds(), TimeUnit.SECONDS);
                Streamed a = alone.get(i);
                assertThat(t.finish()).isEqualTo("length");
                assertThat(t.ids()).as("request %d: tokens together vs alone", i).hasSize(MAX_TOKENS).isEqualTo(a.ids());
                assertThat(t.text()).as("request %d text", i).isEqualTo(a.text());
                assertThat(t.completionTokens()).isEqualTo(MAX_TOKENS);
            }
        }
        String after = s.get("/metrics").body();
        double batched = stepsAbove(after, 1) - stepsAbove(before, 1);
        double wide = stepsAbove(after, 8) - stepsAbove(before, 8);
        assertThat(batched).as("steps with more than one sequence").isPositive();
        assertThat(wide).as("steps with more than 8 sequences").isPositive();
        assertThat(TestStack.metric(after, "epserve_requests_total{endpoint=\"completions\",status=\"200\"}")
                - TestStack.metric(before, "epserve_requests_total{endpoint=\"completions\",status=\"200\"}")).isEqualTo(N);
    }
}
