package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.RoutingResult;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.assertj.core.data.Offset;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The architectures with fixtures of this repository (DeepSeek-V2, V2-Lite, gpt-oss) against
 * the float64 transformers reference of tools/goldens/make_arch_fixtures.py: logits within 1e-4,
 * the same experts with the same weights, the same greedy tokens; and the same with the experts
 * on two in-process workers.
 */
class ArchGoldenTest {
    /** Routing decisions closer than this may legitimately differ in float32 (see the fixtures README). */
    static final double MARGIN = 1e-4;

    static Stream<String> models() {
        return Fixtures.LOCAL_MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void logitsRoutingAndTokensMatchTheReference(String name) {
        check(name, LoadedModel.Options.defaults());
    }

    @ParameterizedTest
    @MethodSource("models")
    void twoInProcessWorkersGiveTheSameOutput(String name) {
        LoadedModel.Dispatchers d = (dir, cfg, w) -> InProcessDispatcher.of(w, cfg.sparseLayers(), cfg.numExperts(), 2,
                ExpertPlacement.Policy.values()[0]);
        check(name, LoadedModel.Options.defaults().withDispatchers(d));
    }

    static void check(String name, LoadedModel.Options options) {
        JsonNode exp = Fixtures.expected(name);
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), options)) {
            int vocab = m.config().vocabSize();
            for (JsonNode c : exp.get("cases")) {
                int[] tokens = Fixtures.ints(c.get("tokens"));
                Map<Integer, RoutingResult> routing = new HashMap<>();
                float[] logits = m.transformer().forward(m.transformer().newCache(tokens.length), tokens, tokens.length, true,
                        (layer, r) -> routing.put(layer, copy(r, tokens.length)));
                double maxDiff = 0;
                for (int p = 0; p < tokens.length; p++) {
                    for (int v = 0; v < vocab; v++) {
                        maxDiff = Math.max(maxDiff, Math.abs(logits[p * vocab + v] - c.get("logits").get(p).get(v).asDouble()));
                    }
                }
                assertThat(maxDiff).as("%s max |Δlogit|", name).isLessThan(1e-4);
                assertThat(routing.keySet()).as("%s sparse layers", name)
                        .containsExactlyInAnyOrderElementsOf(c.get("routing").findValuesAsText("layer").stream().map(Integer::valueOf).toList());
                int checked = 0;
                for (JsonNode r : c.get("routing")) {
                    int layer = r.get("layer").asInt();
                    RoutingResult got = routing.get(layer);
                    for (int t = 0; t < tokens.length; t++) {
                        if (r.get("margin").get(t).asDouble() <= MARGIN) {
                            continue;
                        }
                        checked++;
                        int[] want = Fixtures.ints(r.get("experts").get(t));
                        int[] have = got.expertsOf(t);
                        assertThat(sorted(have)).as("%s layer %d token %d experts", name, layer, t).containsExactly(sorted(want));
                        for (int j = 0; j < want.length; j++) {
                            int slot = Arrays.stream(have).boxed().toList().indexOf(want[j]);
                            assertThat((double) got.weight(t, slot)).as("%s layer %d token %d weight", name, layer, t)
                                    .isCloseTo(r.get("weights").get(t).get(j).asDouble(), Offset.offset(1e-5));
                        }
                    }
                }
                assertThat(checked).as("%s routing decisions checked", name).isGreaterThan(0);
                int[] want = Fixtures.ints(c.get("generated"));
                assertThat(Greedy.generate(m.transformer(), tokens, want.length)).as("%s generated", name).containsExactly(want);
            }
        }
    }

    /** A listener's routing lives in the transformer's workspace: keep a copy. */
    static RoutingResult copy(RoutingResult r, int tokens) {
        int k = r.k();
        int[] experts = new int[tokens * k];
        float[] weights = new float[tokens * k];
        for (int t = 0; t < tokens; t++) {
            for (int j = 0; j < k; j++) {
                experts[t * k + j] = r.expertsOf(t)[j];
                weights[t * k + j] = r.weight(t, j);
            }
        }
        return new RoutingResult(tokens, k, experts, weights);
    }

    static int[] sorted(int[] a) {
        int[] s = a.clone();
        Arrays.sort(s);
        return s;
    }
}
