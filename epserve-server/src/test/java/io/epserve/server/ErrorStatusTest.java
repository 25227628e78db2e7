package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.engine.EngineConfig;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Every error status of the API, over raw HTTP, with OpenAI's error JSON. */
class ErrorStatusTest {
    private static JsonNode error(HttpResponse<String> r, int status) throws Exception {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
        assertThat(r.headers().firstValue("content-type")).hasValue("application/json");
        JsonNode e = TestStack.JSON.readTree(r.body()).get("error");
        assertThat(e).as("OpenAI error object in %s", r.body()).isNotNull();
        assertThat(e.has("message") && e.has("type") && e.has("param") && e.has("code")).as(r.body()).isTrue();
        assertThat(e.get("message").asText()).isNotBlank();
        return e;
    }

    @Test
    void badRequests() throws Exception {
        TestStack s = TestStack.shared();
        JsonNode e = error(s.post("/v1/completions", "{\"prompt\": \"hi\", "), 400);
        assertThat(e.get("type").asText()).isEqualTo("invalid_request_error");
        assertThat(e.get("message").asText()).contains("not valid JSON");
        error(s.post("/v1/completions", "[1, 2]"), 400);
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "temperature", "hot")), 400).get("param").asText())
                .isEqualTo("temperature");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "temperature", 3)), 400).get("param").asText())
                .isEqualTo("temperature");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "top_p", 0)), 400).get("param").asText()).isEqualTo("top_p");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 0)), 400).get("param").asText())
                .isEqualTo("max_tokens");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2.5)), 400).get("param").asText())
                .isEqualTo("max_tokens");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "n", 2)), 400).get("param").asText()).isEqualTo("n");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "stop", 5)), 400).get("param").asText()).isEqualTo("stop");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "stream", "yes")), 400).get("param").asText())
                .isEqualTo("stream");
        assertThat(error(s.post("/v1/completions", Map.of("max_tokens", 3)), 400).get("param").asText()).isEqualTo("prompt");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", new int[] {1, 99999})), 400).get("param").asText())
                .isEqualTo("prompt");
        assertThat(error(s.post("/v1/chat/completions", Map.of("model", ServedModel.DEMO_NAME)), 400).get("param").asText())
                .isEqualTo("messages");
        assertThat(error(s.post("/v1/chat/completions", Map.of("messages", new Object[] {Map.of("content", "x")})), 400)
                .get("param").asText()).isEqualTo("messages[0].role");
        // prompt fits, but prompt + max_tokens does not
        int room = s.served.maxModelLen();
        JsonNode tooMany = error(s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", room)), 400);
        assertThat(tooMany.get("param").asText()).isEqualTo("max_tokens");
        assertThat(tooMany.get("code").asText()).isEqualTo("context_length_exceeded");
    }

    @Test
    void unknownModelAndPath() throws Exception {
        TestStack s = TestStack.shared();
        JsonNode e = error(s.post("/v1/completions", Map.of("model", "gpt-17", "prompt", "hi")), 404);
        assertThat(e.get("code").asText()).isEqualTo("model_not_found");
        assertThat(e.get("message").asText()).contains("gpt-17");
        assertThat(error(s.post("/v1/chat/completions", Map.of("model", "gpt-17", "messages",
                new Object[] {Map.of("role", "user", "content", "x")})), 404).get("param").asText()).isEqualTo("model");
        error(s.get("/v1/models/gpt-17"), 404);
        error(s.get("/v2/nothing"), 404);
        HttpResponse<String> wrongMethod = s.get("/v1/completions");
        error(wrongMethod, 405);
        assertThat(wrongMethod.headers().firstValue("allow")).hasValue("POST");
    }

    @Test
    void promptTooLong() throws Exception {
        TestStack s = TestStack.shared();
        int[] ids = IntStream.range(0, s.served.maxModelLen() + 10).map(i -> 3 + i % 200).toArray();
        JsonNode e = error(s.post("/v1/completions", Map.of("prompt", ids, "max_tokens", 1)), 400);
        assertThat(e.get("code").asText()).isEqualTo("context_length_exceeded");
        assertThat(e.get("param").asText()).isEqualTo("prompt");
        assertThat(e.get("message").asText()).contains(Integer.toString(s.served.maxModelLen()));
        String longText = "word ".repeat(s.served.maxModelLen() + 10);
        JsonNode text = error(s.post("/v1/completions", Map.of("prompt", longText, "max_tokens", 1)), 400);
        assertThat(text.get("param").asText()).isEqualTo("prompt");
        assertThat(text.get("code").asText()).isEqualTo("context_length_exceeded");
        JsonNode chat = error(s.post("/v1/chat/completions", Map.of("messages",
                new Object[] {Map.of("role", "user", "content", longText)}, "max_tokens", 1)), 400);
        assertThat(chat.get("param").asText()).isEqualTo("messages");
        assertThat(chat.get("code").asText()).isEqualTo("context_length_exceeded");
    }

    @Test
    void chatOnAModelWithoutTemplate() throws Exception {
        try (TestStack s = TestStack.start(TestStack.ENGINE, true, false)) {
            JsonNode e = error(s.post("/v1/chat/completions", Map.of("messages", new Object[] {Map.of("role", "user", "content", "x")})), 400);
            assertThat(e.get("code").asText()).isEqualTo("chat_template_missing");
            assertThat(e.get("message").asText()).contains("no chat template");
            // completions still work
            assertThat(s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2)).statusCode()).isEqualTo(200);
        }
    }

    /** One running and one waiting request fill a queue of one; the next gets 429 with Retry-After. */
    @Test
    void queueFullIs429WithRetryAfter() throws Exception {
        EngineConfig tiny = TestStack.ENGINE.withMaxRunning(1).withMaxWaiting(1);
        try (TestStack s = TestStack.start(tiny, true, true)) {
            String longRun = TestStack.JSON.writeValueAsString(Map.of("prompt", "a", "max_tokens", 3000, "ignore_eos", true,
                    "stream", true));
            try (RawStream running = new RawStream(s.server.address(), "/v1/completions", longRun)) {
                assertThat(running.status).isEqualTo(200);
                running.nextData(); // generating: it holds the one running slot
                try (RawStream waiting = new RawStream(s.server.address(), "/v1/completions", longRun)) {
                    assertThat(waiting.status).isEqualTo(200); // accepted into the waiting queue
                    HttpResponse<String> r = s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2));
                    JsonNode e = error(r, 429);
                    assertThat(e.get("type").asText()).isEqualTo("rate_limit_error");
                    assertThat(r.headers().firstValue("retry-after")).isPresent();
                    assertThat(Integer.parseInt(r.headers().firstValue("retry-after").orElseThrow())).isPositive();
                }
            }
            TestStack.await("the disconnected requests to be cancelled", () -> s.engine.stats().running() == 0
                    && s.engine.stats().waiting() == 0);
            assertThat(s.metric("epserve_requests_total{endpoint=\"completions\",status=\"429\"}")).isEqualTo(1.0);
        }
    }

    @Test
    void notReadyWhileTheModelLoads() throws Exception {
        try (EpServer server = EpServer.builder().port(0).build().start()) {
            var http = HttpClient.newHttpClient();
            Function<String, URI> u = p -> server.baseUri().resolve(p);
            HttpResponse<String> health = http.send(HttpRequest.newBuilder(u.apply("/health")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertThat(health.statusCode()).isEqualTo(200);
            HttpResponse<String> ready = http.send(HttpRequest.newBuilder(u.apply("/ready")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertThat(ready.statusCode()).isEqualTo(503);
            assertThat(ready.body()).contains("loading");
            HttpResponse<String> gen = http.send(HttpRequest.newBuilder(u.apply("/v1/completions"))
                    .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString("{\"prompt\": \"hi\"}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            JsonNode e = error(gen, 503);
            assertThat(e.get("code").asText()).isEqualTo("not_ready");
            assertThat(gen.headers().firstValue("retry-after")).isPresent();
            error(http.send(HttpRequest.newBuilder(u.apply("/v1/models")).build(), HttpResponse.BodyHandlers.ofString()), 503);
        }
    }

    @Test
    void notReadyWhenTheEngineIsNotRunning() throws Exception {
        try (TestStack s = TestStack.start(TestStack.ENGINE, false, true)) {
            assertThat(s.get("/health").statusCode()).isEqualTo(200);
            assertThat(s.get("/ready").statusCode()).isEqualTo(503);
            error(s.post("/v1/chat/completions", Map.of("messages", new Object[] {Map.of("role", "user", "content", "x")})), 503);
            error(s.post("/v1/completions", Map.of("prompt", "x")), 503);
        }
        TestStack ok = TestStack.shared();
        assertThat(ok.get("/ready").statusCode()).isEqualTo(200);
        assertThat(ok.get("/health").statusCode()).isEqualTo(200);
    }
}
