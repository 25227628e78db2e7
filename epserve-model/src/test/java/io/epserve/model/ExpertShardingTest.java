package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertShards;
import io.epserve.moe.ExpertWorker;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.tensor.DType;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Experts split into K shards over K different workers compute the same function as whole experts. */
class ExpertShardingTest {
    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    static LoadedModel.Dispatchers sharded(int workers, int shards, ExpertPlacement.Policy policy) {
        return (dir, cfg, w) -> {
            List<String> names = IntStream.range(0, workers).mapToObj(i -> "w" + i).toList();
            ExpertPlacement p = ExpertPlacement.createSharded(cfg.sparseLayers(), cfg.numExperts(), shards, names, policy, 0);
            var store = ExpertShards.store(w, cfg.layers(), cfg.numExperts(), shards);
            List<ExpertWorker> ws = names.stream().map(n -> new ExpertWorker(n, store, cfg.numExperts() * shards)).toList();
            return ExpertShards.dispatcher(new InProcessDispatcher(p, ws), shards);
        };
    }

    @ParameterizedTest
    @MethodSource("models")
    void shardedEqualsUnsharded(String name) {
        JsonNode exp = Fixtures.expected(name);
        try (LoadedModel whole = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            for (int[] wk : new int[][] {{2, 2}, {4, 2}, {4, 4}, {3, 3}}) {
                try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults().withValidate(false)
                        .withDispatchers(sharded(wk[0], wk[1], ExpertPlacement.Policy.CONTIGUOUS)))) {
                    for (JsonNode c : exp.get("cases")) {
                        int[] tokens = Fixtures.ints(c.get("tokens"));
                        float[] want = whole.transformer().forward(whole.transformer().newCache(tokens.length), tokens, tokens.length,
                                true, RoutingListener.NONE);
                        float[] got = m.transformer().forward(m.transformer().newCache(tokens.length), tokens, tokens.length, true,
                                RoutingListener.NONE);
                        for (int i = 0; i < want.length; i++) {
                            assertThat(got[i]).as("%s %d workers %d shards logit %d", name, wk[0], wk[1], i)
                                    .isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f));
                        }
                        assertThat(Greedy.generate(m.transformer(), tokens, 16)).containsExactly(Fixtures.ints(c.get("generated")));
                    }
                }
            }
        }
    }

    @org.junit.jupiter.api.io.TempDir
    Path tmp;

    /** Quantized experts shard at whole blocks: the same function as whole quantized experts; a cut inside a block is refused. */
    @Test
    void quantizedExpertsShardAtBlockBoundaries() throws IOException {
        Path dir = Fixtures.copyModel("mixtral", tmp);
        JsonNode exp = Fixtures.expected("mixtral");
        for (DType dt : new DType[] {DType.Q8_0, DType.Q4_0}) {
            LoadedModel.Options q = LoadedModel.Options.defaults().withExpertDType(dt);
            try (LoadedModel whole = LoadedModel.load(dir, q)) {
                // intermediate 192: 2 shards of 96 and 3 of 64 weights are whole blocks of 32
                for (int[] wk : new int[][] {{2, 2}, {3, 3}}) {
                    try (LoadedModel m = LoadedModel.load(dir, q.withDispatchers(sharded(wk[0], wk[1], ExpertPlacement.Policy.CONTIGUOUS)))) {
                        for (JsonNode c : exp.get("cases")) {
                            int[] tokens = Fixtures.ints(c.get("tokens"));
                            float[] want = whole.transformer().forward(whole.transformer().newCache(tokens.length), tokens, tokens.length,
                                    true, RoutingListener.NONE);
                            float[] got = m.transformer().forward(m.transformer().newCache(tokens.length), tokens, tokens.length, true,
                                    RoutingListener.NONE);
                            for (int i = 0; i < want.length; i++) {
                                assertThat(got[i]).as("%s %d shards logit %d", dt, wk[1], i)
                                        .isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-5f));
                            }
                        }
                    }
                }
                // 4 shards of 48 weights would cut Q8_0/Q4_0 blocks of 32
                var store = ExpertShards.store(whole.weights(), whole.config().layers(), whole.config().numExperts(), 4);
                assertThatThrownBy(() -> store.expert(0, 1))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("cannot shard")
                        .hasMessageContaining("blocks of 32")
                        .hasMessageContaining("192 / K is a multiple of 32");
            }
        }
    }

    @Test
    void shardsOfOneExpertSitOnDifferentWorkers() {
        boolean[] sparse = {true, true};
        ExpertPlacement p = ExpertPlacement.createSharded(sparse, 8, 3, List.of("a", "b", "c", "d"), ExpertPlacement.Policy.ROUND_ROBIN, 0);
        for (int e = 0; e < 8; e++) {
            Set<Integer> owners = new HashSet<>();
            for (int s = 0; s < 3; s++) {
                owners.add(p.primary(1, e * 3 + s));
            }
            assertThat(owners).hasSize(3);
        }
        assertThatThrownBy(() -> ExpertPlacement.createSharded(sparse, 8, 5, List.of("a", "b"), ExpertPlacement.Policy.CONTIGUOUS, 0))
                .hasMessageContaining("expert-shards");
    }
}
