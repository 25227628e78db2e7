package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpResponse;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Request forms over raw HTTP: prompts as token ids, text-part messages, the extensions. */
class CompletionsApiTest {
    private static JsonNode ok(HttpResponse<String> r) throws Exception {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(200);
        return TestStack.JSON.readTree(r.body());
    }

    @Test
    void promptFormsGiveTheSameTokens() throws Exception {
        TestStack s = TestStack.shared();
        int[] ids = s.served.tokenizer().encodeWithSpecial("Experts route tokens");
        Map<String, Object> base = Map.of("max_tokens", 6, "seed", 5, "temperature", 0.7, "ignore_eos", true, "return_token_ids", true);
        JsonNode text = ok(s.post("/v1/completions", with(base, "prompt", "Experts route tokens")));
        JsonNode asIds = ok(s.post("/v1/completions", with(base, "prompt", ids)));
        JsonNode nested = ok(s.post("/v1/completions", with(base, "prompt", List.of(ids))));
        JsonNode listOfOne = ok(s.post("/v1/completions", with(base, "prompt", List.of("Experts route tokens"))));
        for (JsonNode r : List.of(text, asIds, nested, listOfOne)) {
            assertThat(r.get("object").asText()).isEqualTo("text_completion");
            assertThat(r.get("id").asText()).startsWith("cmpl-");
            assertThat(r.get("usage").get("prompt_tokens").asInt()).isEqualTo(ids.length);
            assertThat(r.get("prompt_token_ids").size()).isEqualTo(ids.length);
            JsonNode choice = r.get("choices").get(0);
            assertThat(choice.get("token_ids").size()).isEqualTo(6);
            assertThat(choice.get("token_ids")).isEqualTo(text.get("choices").get(0).get("token_ids"));
            assertThat(choice.get("text").asText()).isEqualTo(text.get("choices").get(0).get("text").asText());
        }
        // the text is the detokenized ids
        int[] gen = new int[6];
        for (int i = 0; i < 6; i++) {
            gen[i] = text.get("choices").get(0).get("token_ids").get(i).asInt();
        }
        assertThat(text.get("choices").get(0).get("text").asText()).isEqualTo(s.served.tokenizer().decode(gen, true));
        // more than one prompt is n > 1
        assertThat(s.post("/v1/completions", with(base, "prompt", List.of("a", "b"))).statusCode()).isEqualTo(400);
    }

    @Test
    void chatAcceptsTextPartsAndSendsARoleFirst() throws Exception {
        TestStack s = TestStack.shared();
        Object parts = List.of(Map.of("type", "text", "text", "Hello "), Map.of("type", "text", "text", "experts"));
        JsonNode a = ok(s.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "user", "content", parts)),
                "max_completion_tokens", 4, "seed", 3, "ignore_eos", true)));
        JsonNode b = ok(s.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "user", "content", "Hello experts")),
                "max_completion_tokens", 4, "seed", 3, "ignore_eos", true)));
        assertThat(a.get("object").asText()).isEqualTo("chat.completion");
        assertThat(a.get("choices").get(0).get("message").get("role").asText()).isEqualTo("assistant");
        assertThat(a.get("choices").get(0).get("message").get("content")).isEqualTo(b.get("choices").get(0).get("message").get("content"));
        assertThat(a.get("usage")).isEqualTo(b.get("usage"));
        assertThat(s.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "user", "content",
                List.of(Map.of("type", "image_url", "image_url", Map.of("url", "x")))))))).extracting(HttpResponse::statusCode).isEqualTo(400);

        HttpResponse<String> stream = s.post("/v1/chat/completions", Map.of("messages", List.of(Map.of("role", "user", "content", "hi")),
                "max_tokens", 3, "stream", true, "ignore_eos", true));
        List<JsonNode> events = TestStack.events(stream.body());
        assertThat(events.get(0).get("object").asText()).isEqualTo("chat.completion.chunk");
        assertThat(events.get(0).get("choices").get(0).get("delta").get("role").asText()).isEqualTo("assistant");
        assertThat(events.getLast().get("choices").get(0).get("finish_reason").asText()).isEqualTo("length");
        assertThat(events).allSatisfy(e -> assertThat(e.has("usage")).as("no usage without include_usage").isFalse());
    }

    private static Map<String, Object> with(Map<String, Object> base, String key, Object value) {
        Map<String, Object> m = new HashMap<>(base);
        m.put(key, value);
        return m;
    }
}
