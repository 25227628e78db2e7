package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.math.BigInteger;
import java.net.http.HttpResponse;
import java.util.List;
import java.util.Map;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.Tuple;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.statistics.Statistics;

/**
 * Generated request bodies against the real server: well-formed ones with every field of the
 * API given values of every JSON type and edge values (subnormal, huge, negative, fractional
 * numbers, odd strings, nested lists and objects), and broken ones (truncated, trailing bytes,
 * not JSON). Every answer is 200 or a 4xx with an OpenAI error body; afterwards the server still
 * answers and the engine holds no request and no KV block.
 */
class RequestFuzzTest {
    private static final JsonNodeFactory F = JsonNodeFactory.instance;
    private static final List<String> FIELDS = List.of("model", "prompt", "messages", "max_tokens", "max_completion_tokens",
            "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream", "stream_options", "n", "best_of", "user",
            "logprobs", "top_logprobs", "echo", "presence_penalty", "frequency_penalty", "logit_bias", "tools",
            "response_format", "suffix", "ignore_eos", "skip_special_tokens", "return_token_ids", "add_generation_prompt");

    @Property(tries = 2500)
    void everyBodyGets200Or4xxWithAJsonError(@ForAll("bodies") String body, @ForAll boolean chat) throws Exception {
        TestStack s = TestStack.shared();
        HttpResponse<String> r = s.post(chat ? "/v1/chat/completions" : "/v1/completions", body);
        int status = r.statusCode();
        Statistics.collect(status == 200 ? "200" : "4xx");
        assertThat(status == 200 || status >= 400 && status < 500).as("status %d for %s: %s", status, body, r.body()).isTrue();
        if (status != 200) {
            assertThat(r.headers().firstValue("content-type")).as(body).hasValue("application/json");
            JsonNode e = TestStack.JSON.readTree(r.body()).path("error");
            assertThat(e.path("message").isTextual() && e.has("type") && e.has("param") && e.has("code")).as(r.body()).isTrue();
        } else if (r.headers().firstValue("content-type").orElse("").startsWith("text/event-stream")) {
            TestStack.events(r.body()).forEach(ev -> assertThat(ev.has("error")).as(r.body()).isFalse());
        } else {
            assertThat(TestStack.JSON.readTree(r.body()).path("choices").size()).as(r.body()).isEqualTo(1);
        }
    }

    @AfterContainer
    static void theServerIsUpAndHoldsNothing() throws Exception {
        TestStack s = TestStack.shared();
        TestStack.await("no running or waiting request and no KV block in use", () -> s.engine.stats().running() == 0
                && s.engine.stats().waiting() == 0 && s.engine.stats().kvBlocksUsed() == 0 && s.server.activeRequests() == 0);
        assertThat(s.get("/health").statusCode()).isEqualTo(200);
        assertThat(s.get("/ready").statusCode()).isEqualTo(200);
        assertThat(s.post("/v1/completions", Map.of("prompt", "still here", "max_tokens", 2)).statusCode()).isEqualTo(200);
    }

    @Provide
    Arbitrary<String> bodies() {
        Arbitrary<String> objects = requests().map(JsonNode::toString);
        Arbitrary<String> broken = Combinators.combine(objects, Arbitraries.integers().between(0, 200),
                Arbitraries.of("", " x", "}", "{}", "]", "\u0000", "null", ",", " {\"prompt\": 1}")).as((json, cut, tail) ->
                json.substring(0, Math.min(cut, json.length())) + tail);
        Arbitrary<String> noise = Arbitraries.strings().ofMaxLength(60);
        return Arbitraries.frequencyOf(Tuple.of(8, objects), Tuple.of(2, broken),
                Tuple.of(1, noise));
    }

    /** An object with some of the API's fields (and an odd one), each with a value of any kind. */
    private Arbitrary<ObjectNode> requests() {
        Arbitrary<Map<String, JsonNode>> fields = Arbitraries.maps(Arbitraries.of(FIELDS), value(2)).ofMaxSize(6);
        Arbitrary<JsonNode> prompt = Arbitraries.oneOf(shortText(), Arbitraries.integers().between(-3, 600).list().ofMaxSize(8)
                .map(ids -> { ArrayNode a = F.arrayNode(); ids.forEach(a::add); return a; }), value(2));
        Arbitrary<JsonNode> messages = Arbitraries.oneOf(message().list().ofMinSize(1).ofMaxSize(3)
                .map(ms -> { ArrayNode a = F.arrayNode(); ms.forEach(a::add); return a; }), value(2));
        Arbitrary<JsonNode> maxTokens = Arbitraries.oneOf(Arbitraries.integers().between(1, 4).map(F::numberNode), value(1));
        return Combinators.combine(fields, prompt, messages, maxTokens, Arbitraries.integers().between(0, 3)).as((f, p, m, mt, which) -> {
            ObjectNode o = F.objectNode();
            // the prompt fields are present most of the time, so that bodies get past them to the rest
            if (which != 0) {
                o.set("prompt", p);
                o.set("messages", m);
            }
            f.forEach(o::set);
            // a valid bound on the length keeps each generation short; max_tokens itself is fuzzed
            o.set("max_completion_tokens", mt);
            return o;
        });
    }

    private Arbitrary<JsonNode> message() {
        Arbitrary<JsonNode> role = Arbitraries.oneOf(Arbitraries.of("user", "system", "assistant", "", "tool").map(F::textNode), value(0));
        Arbitrary<JsonNode> content = Arbitraries.oneOf(shortText(), value(1));
        return Combinators.combine(role, content, Arbitraries.integers().between(0, 3)).as((r, c, drop) -> {
            ObjectNode o = F.objectNode();
            if (drop != 1) {
                o.set("role", r);
            }
            if (drop != 2) {
                o.set("content", c);
            }
            return o;
        });
    }

    private Arbitrary<JsonNode> shortText() {
        return Arbitraries.strings().withCharRange('\u0000', '\u024f').withChars("<|>\u4e2d\u00e9 \n\t\"\\")
                .ofMaxLength(40).map(F::textNode);
    }

    /** Any JSON value, nested up to {@code depth} levels. */
    private Arbitrary<JsonNode> value(int depth) {
        Arbitrary<JsonNode> scalar = Arbitraries.oneOf(
                Arbitraries.just(F.nullNode()),
                Arbitraries.of(true, false).map(F::booleanNode),
                Arbitraries.integers().map(F::numberNode),
                Arbitraries.integers().between(-2, 40).map(F::numberNode),
                Arbitraries.longs().map(F::numberNode),
                Arbitraries.bigIntegers().between(BigInteger.TEN.pow(30).negate(), BigInteger.TEN.pow(30)).map(F::numberNode),
                Arbitraries.doubles().map(F::numberNode),
                Arbitraries.of(0.0, -0.0, 1e-310, 5e-324, Double.MIN_NORMAL, 1e-300, 0.5, 1.0, 1.5, 2.0, 2.0000001, 1e308,
                        -1e308, 3.5, 7.0, 1e15).map(F::numberNode),
                shortText());
        if (depth == 0) {
            return scalar;
        }
        Arbitrary<JsonNode> list = value(depth - 1).list().ofMaxSize(4).map(xs -> {
            ArrayNode a = F.arrayNode();
            xs.forEach(a::add);
            return a;
        });
        Arbitrary<JsonNode> object = Arbitraries.maps(Arbitraries.of("type", "text", "include_usage", "role", "content", "x"),
                value(depth - 1)).ofMaxSize(3).map(m -> {
                    ObjectNode o = F.objectNode();
                    m.forEach(o::set);
                    return o;
                });
        return Arbitraries.frequencyOf(Tuple.of(6, scalar), Tuple.of(1, list),
                Tuple.of(1, object));
    }
}
