package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Experts on 1, 2 and 4 in-process workers, under both placement policies, are the same function. */
class InProcessWorkersTest {
    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void workersGiveTheSingleProcessLogitsAndTokens(String name) {
        JsonNode exp = Fixtures.expected(name);
        try (LoadedModel single = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            for (ExpertPlacement.Policy policy : ExpertPlacement.Policy.values()) {
                for (int n : new int[] {1, 2, 4}) {
                    LoadedModel.Dispatchers d = (dir, cfg, w) -> InProcessDispatcher.of(w, cfg.sparseLayers(), cfg.numExperts(), n, policy);
                    try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults().withValidate(false)
                            .withDispatchers(d))) {
                        for (JsonNode c : exp.get("cases")) {
                            int[] tokens = Fixtures.ints(c.get("tokens"));
                            float[] want = single.transformer().forward(single.transformer().newCache(tokens.length), tokens,
                                    tokens.length, true, RoutingListener.NONE);
                            float[] got = m.transformer().forward(m.transformer().newCache(tokens.length), tokens, tokens.length,
                                    true, RoutingListener.NONE);
                            for (int i = 0; i < want.length; i++) {
                                assertThat(got[i]).as("%s %s %d workers logit %d", name, policy, n, i)
                                        .isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f));
                            }
                            assertThat(Greedy.generate(m.transformer(), tokens, 16)).containsExactly(Fixtures.ints(c.get("generated")));
                        }
                    }
                }
            }
        }
    }
}
