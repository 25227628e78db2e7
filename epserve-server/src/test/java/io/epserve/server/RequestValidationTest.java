package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/**
 * Requests that once got a 5xx, stalled the server or were accepted though malformed: each is
 * answered 200 or a 400 naming the field, as the OpenAI API does.
 */
class RequestValidationTest {
    private static JsonNode error(HttpResponse<String> r, int status) throws Exception {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(status);
        assertThat(r.headers().firstValue("content-type")).hasValue("application/json");
        JsonNode e = TestStack.JSON.readTree(r.body()).get("error");
        assertThat(e).as(r.body()).isNotNull();
        assertThat(e.get("type").asText()).isEqualTo("invalid_request_error");
        return e;
    }

    private static String text(HttpResponse<String> r) throws Exception {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        return TestStack.JSON.readTree(r.body()).at("/choices/0/text").asText();
    }

    /** Temperatures too small to divide by sample greedily (they once gave 500). */
    @Test
    void tinyTemperaturesSampleGreedily() throws Exception {
        TestStack s = TestStack.shared();
        String greedy = text(s.post("/v1/completions", Map.of("prompt", "The experts", "max_tokens", 8, "temperature", 0,
                "ignore_eos", true)));
        for (String t : List.of("1e-310", "5e-324", "4.9e-324", "1e-308")) {
            String body = "{\"prompt\": \"The experts\", \"max_tokens\": 8, \"ignore_eos\": true, \"temperature\": " + t + "}";
            assertThat(text(s.post("/v1/completions", body))).as("temperature " + t).isEqualTo(greedy);
            HttpResponse<String> chat = s.post("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], "
                    + "\"max_tokens\": 4, \"temperature\": " + t + "}");
            assertThat(chat.statusCode()).as(chat.body()).isEqualTo(200);
        }
        assertThat(s.post("/v1/completions", Map.of("prompt", "x", "max_tokens", 4, "temperature", 2.0)).statusCode()).isEqualTo(200);
        assertThat(error(s.post("/v1/completions", "{\"prompt\": \"x\", \"temperature\": 1e999}"), 400).get("param").asText())
                .isEqualTo("temperature");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "x", "temperature", -1e-320)), 400).get("param").asText())
                .isEqualTo("temperature");
    }

    @Test
    void bodiesMustBeExactlyOneJsonObject() throws Exception {
        TestStack s = TestStack.shared();
        assertThat(error(s.post("/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": 2} trailing"), 400).get("message").asText())
                .contains("not valid JSON");
        error(s.post("/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": 2}{\"prompt\": \"hi\"}"), 400);
        error(s.post("/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": 2}]"), 400);
        assertThat(error(s.post("/v1/completions", "{\"prompt\": \"hi\", \"max_tokens\": 2, \"max_tokens\": 3000}"), 400)
                .get("message").asText()).contains("max_tokens");
        error(s.post("/v1/completions", ""), 400);
        assertThat(s.post("/v1/completions", "  {\"prompt\": \"hi\", \"max_tokens\": 2}\n ").statusCode())
                .as("whitespace around the object is fine").isEqualTo(200);
    }

    @Test
    void fieldTypesAreChecked() throws Exception {
        TestStack s = TestStack.shared();
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "user", 5)), 400).get("param").asText()).isEqualTo("user");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "user", List.of("a"))), 400).get("param").asText())
                .isEqualTo("user");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "top_logprobs", 1.5)), 400).get("param").asText())
                .isEqualTo("top_logprobs");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "top_logprobs", "2")), 400).get("param").asText())
                .isEqualTo("top_logprobs");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "top_logprobs", 21)), 400).get("param").asText())
                .isEqualTo("top_logprobs");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "top_logprobs", 3)), 400).get("message").asText())
                .contains("not supported");
        assertThat(error(s.post("/v1/completions", Map.of("prompt", "hi", "suffix", 7)), 400).get("param").asText()).isEqualTo("suffix");
        assertThat(error(s.post("/v1/chat/completions", Map.of("messages",
                List.of(Map.of("role", "user", "content", "x", "name", 3)))), 400).get("param").asText()).isEqualTo("messages[0].name");
        assertThat(s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 2, "user", "u-1", "top_logprobs", 0)).statusCode())
                .isEqualTo(200);
    }

    /**
     * A 19 MB prompt is refused by its size before it is tokenized, so a flood of them costs
     * their senders, and a small request sent meanwhile is answered.
     */
    @Test
    void hugePromptsAreRefusedBeforeTokenizingAndStallNobody() throws Exception {
        TestStack s = TestStack.shared();
        String huge = TestStack.JSON.writeValueAsString(Map.of("prompt", "lorem ipsum ".repeat((19 << 20) / 12), "max_tokens", 1));
        String hugeChat = TestStack.JSON.writeValueAsString(Map.of("messages",
                List.of(Map.of("role", "user", "content", "lorem ipsum ".repeat((19 << 20) / 12)))));
        List<CompletableFuture<HttpResponse<String>>> flood = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            String body = i % 2 == 0 ? huge : hugeChat;
            String path = i % 2 == 0 ? "/v1/completions" : "/v1/chat/completions";
            flood.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return s.post(path, body);
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            }));
        }
        long t0 = System.nanoTime();
        HttpResponse<String> small = s.post("/v1/completions", Map.of("prompt", "hi", "max_tokens", 1));
        Duration smallTook = Duration.ofNanos(System.nanoTime() - t0);
        assertThat(small.statusCode()).isEqualTo(200);
        for (int i = 0; i < flood.size(); i++) {
            JsonNode e = error(flood.get(i).get(), 400);
            assertThat(e.get("code").asText()).isEqualTo("context_length_exceeded");
            assertThat(e.get("param").asText()).isEqualTo(i % 2 == 0 ? "prompt" : "messages");
            assertThat(e.get("message").asText()).as("judged by its size, not by tokenizing it").contains("bytes of text");
        }
        // Generous bound for a shared CI machine; before the size check this took tens of seconds.
        assertThat(smallTook).isLessThan(Duration.ofSeconds(20));
    }
}
