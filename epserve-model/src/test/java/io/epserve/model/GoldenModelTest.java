package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.RoutingResult;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** End to end against the float64 reference: logits, routing and greedy generation of every fixture. */
class GoldenModelTest {

    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void logitsAndRoutingMatchReference(String name) {
        JsonNode exp = Fixtures.expected(name);
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            int vocab = m.config().vocabSize();
            for (JsonNode c : exp.get("cases")) {
                int[] tokens = Fixtures.ints(c.get("tokens"));
                Map<Integer, RoutingResult> routing = new HashMap<>();
                KvCache cache = m.transformer().newCache(tokens.length);
                float[] logits = m.transformer().forward(cache, tokens, tokens.length, true, routing::put);
                double maxDiff = 0;
                for (int p = 0; p < tokens.length; p++) {
                    JsonNode row = c.get("logits").get(p);
                    for (int v = 0; v < vocab; v++) {
                        maxDiff = Math.max(maxDiff, Math.abs(logits[p * vocab + v] - row.get(v).asDouble()));
                    }
                }
                assertThat(maxDiff).as("%s max |Δlogit|", name).isLessThan(1e-3);
                for (JsonNode r : c.get("routing")) {
                    int layer = r.get("layer").asInt();
                    RoutingResult got = routing.get(layer);
                    assertThat(got).as("%s routing of layer %d", name, layer).isNotNull();
                    for (int t = 0; t < tokens.length; t++) {
                        double margin = r.get("margin").get(t).asDouble();
                        int[] want = Fixtures.ints(r.get("experts").get(t));
                        int[] have = got.expertsOf(t);
                        if (margin <= 1e-3) {
                            continue;
                        }
                        int[] ws = want.clone();
                        int[] hs = have.clone();
                        Arrays.sort(ws);
                        Arrays.sort(hs);
                        assertThat(hs).as("%s layer %d token %d experts", name, layer, t).containsExactly(ws);
                        for (int j = 0; j < want.length; j++) {
                            double wWant = r.get("weights").get(t).get(j).asDouble();
                            int slot = indexOf(have, want[j]);
                            assertThat((double) got.weight(t, slot)).as("%s layer %d token %d weight of expert %d",
                                    name, layer, t, want[j]).isCloseTo(wWant, org.assertj.core.data.Offset.offset(1e-5));
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void greedyGenerationMatchesReference(String name) {
        JsonNode exp = Fixtures.expected(name);
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            for (JsonNode c : exp.get("cases")) {
                int[] prompt = Fixtures.ints(c.get("tokens"));
                int[] want = Fixtures.ints(c.get("generated"));
                int[] got = Greedy.generate(m.transformer(), prompt, want.length);
                assertThat(got).as("%s generated", name).containsExactly(want);
            }
        }
    }

    private static int indexOf(int[] a, int v) {
        for (int i = 0; i < a.length; i++) {
            if (a[i] == v) {
                return i;
            }
        }
        return -1;
    }
}
