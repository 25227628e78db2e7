package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.moe.GroupedSigmoidRouter;
import io.epserve.moe.Router;
import io.epserve.moe.RoutingResult;
import io.epserve.moe.SwiGlu;
import io.epserve.tensor.Kernels;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.assertj.core.data.Offset;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The feed-forward side of a layer against HF's modules (goldens/&lt;model&gt;/moe.json,
 * dense_mlp.json, router_group_mask.json):
 * <ul>
 *   <li>router ({@code mlp.gate}): logits, chosen experts (as sets) and their weights — softmax
 *       top-k with renormalisation (Mixtral; Qwen3-MoE norm_topk_prob) and without (Qwen2-MoE,
 *       OLMoE), DeepSeek's grouped sigmoid with e_score_correction_bias and routed_scaling_factor;
 *       both the router built from the config and the routing the transformer reports;</li>
 *   <li>expert FFN: single routed experts (SwiGLU), the shared expert, Qwen2-MoE's sigmoid
 *       shared-expert gate, DeepSeek's dense MLP;</li>
 *   <li>combine: the whole block ({@code mlp(x)}: weighted routed experts + shared expert).</li>
 * </ul>
 * Inputs were chosen with routing margins above 2e-3, so the choice must match exactly.
 * Tolerances (float32 vs float64 reference, values O(1)): logits, expert and block outputs
 * 1e-4 + 1e-4·|ref|; routing weights and the shared-expert gate 1e-5 absolute (they are in [0, 1],
 * DeepSeek's ≤ routed_scaling_factor).
 */
class LayerGoldenMoeTest {
    static final double ATOL = 1e-4;
    static final double RTOL = 1e-4;
    static final double WEIGHT_TOL = 1e-5;

    static Stream<String> models() {
        return LayerGoldens.modelsWith("moe.json");
    }

    static Stream<String> denseModels() {
        return LayerGoldens.modelsWith("dense_mlp.json");
    }

    static Stream<String> groupMaskModels() {
        return LayerGoldens.modelsWith("router_group_mask.json");
    }

    /** The router MoeTransformer builds for this layer (LEARNED), from the config. */
    private static Router routerOf(ModelConfig cfg, LayerWeights.Moe moe) {
        return MoeTransformer.learnedRouter(cfg, moe);
    }

    private static float[] routerLogits(LayerWeights.Moe moe, float[] x, int n, int experts) {
        float[] logits = new float[n * experts];
        Kernels.matmul(x, 0, n, moe.gate(), logits, 0);
        return logits;
    }

    /** Same experts per token (as sets) and the same multiplier on each. */
    private static void assertRouting(String what, RoutingResult got, JsonNode want) {
        int n = want.get("experts").size();
        assertThat(got.tokens()).as(what).isEqualTo(n);
        for (int t = 0; t < n; t++) {
            int[] wantIds = Fixtures.ints(want.get("experts").get(t));
            int[] have = got.expertsOf(t);
            int[] a = wantIds.clone();
            int[] b = have.clone();
            Arrays.sort(a);
            Arrays.sort(b);
            assertThat(b).as("%s token %d experts (margin %s)", what, t, want.get("margin").get(t)).containsExactly(a);
            for (int j = 0; j < wantIds.length; j++) {
                int slot = indexOf(have, wantIds[j]);
                assertThat((double) got.weight(t, slot)).as("%s token %d weight of expert %d", what, t, wantIds[j])
                        .isCloseTo(want.get("weights").get(t).get(j).asDouble(), Offset.offset(WEIGHT_TOL));
            }
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void routerMatchesReference(String name) {
        JsonNode g = LayerGoldens.read(name, "moe.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            ModelConfig cfg = m.config();
            int layer = g.get("layer").asInt();
            LayerWeights.Moe moe = (LayerWeights.Moe) m.weights().layer(layer).ffn();
            float[] x = LayerGoldens.floats(g.get("input"));
            int n = x.length / cfg.hidden();
            float[] logits = routerLogits(moe, x, n, cfg.numExperts());
            LayerGoldens.assertClose(name + " router logits", logits, LayerGoldens.doubles(g.get("router").get("logits")), ATOL, RTOL);
            assertRouting(name + " router", routerOf(cfg, moe).route(logits, new int[n], n), g.get("router"));

            // the routing the transformer itself uses and reports
            Map<Integer, RoutingResult> seen = new HashMap<>();
            m.transformer().feedForward(layer, new int[n], n, x, new float[x.length], seen::put);
            assertRouting(name + " routing reported by feedForward", seen.get(layer), g.get("router"));
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void expertsMatchReference(String name) {
        JsonNode g = LayerGoldens.read(name, "moe.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            ModelConfig cfg = m.config();
            int layer = g.get("layer").asInt();
            float[] x = LayerGoldens.floats(g.get("input"));
            int n = x.length / cfg.hidden();
            for (JsonNode e : g.get("experts")) {
                int id = e.get("id").asInt();
                var w = m.weights().expert(layer, id);
                float[] out = new float[x.length];
                SwiGlu.forward(w, x, 0, n, out, 0, new float[2 * n * w.intermediate()]);
                LayerGoldens.assertClose(name + " expert " + id, out, LayerGoldens.doubles(e.get("output")), ATOL, RTOL);
            }
            LayerWeights.Moe moe = (LayerWeights.Moe) m.weights().layer(layer).ffn();
            JsonNode shared = g.get("shared");
            assertThat(moe.shared() != null).as("%s has a shared expert", name).isEqualTo(shared != null);
            if (shared != null) {
                float[] out = new float[x.length];
                SwiGlu.forward(moe.shared(), x, 0, n, out, 0, new float[2 * n * moe.shared().intermediate()]);
                LayerGoldens.assertClose(name + " shared expert", out, LayerGoldens.doubles(shared.get("output")), ATOL, RTOL);
                assertThat(moe.sharedGate() != null).as("%s has a shared-expert gate", name).isEqualTo(shared.has("gate"));
                if (shared.has("gate")) {
                    float[] gate = new float[n];
                    Kernels.matmul(x, 0, n, moe.sharedGate(), gate, 0);
                    for (int t = 0; t < n; t++) {
                        assertThat(1.0 / (1.0 + Math.exp(-gate[t]))).as("%s shared-expert gate token %d", name, t)
                                .isCloseTo(shared.get("gate").get(t).asDouble(), Offset.offset(WEIGHT_TOL));
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void sparseBlockMatchesReference(String name) {
        JsonNode g = LayerGoldens.read(name, "moe.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            int layer = g.get("layer").asInt();
            float[] x = LayerGoldens.floats(g.get("input"));
            int n = x.length / m.config().hidden();
            float[] out = new float[x.length];
            m.transformer().feedForward(layer, new int[n], n, x, out, RoutingListener.NONE);
            LayerGoldens.assertClose(name + " MoE block output", out, LayerGoldens.doubles(g.get("output")), ATOL, RTOL);
        }
    }

    @ParameterizedTest
    @MethodSource("denseModels")
    void denseMlpMatchesReference(String name) {
        JsonNode g = LayerGoldens.read(name, "dense_mlp.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            int layer = g.get("layer").asInt();
            assertThat(m.config().isSparse(layer)).isFalse();
            float[] x = LayerGoldens.floats(g.get("input"));
            int n = x.length / m.config().hidden();
            float[] out = new float[x.length];
            m.transformer().feedForward(layer, new int[n], n, x, out, RoutingListener.NONE);
            LayerGoldens.assertClose(name + " dense MLP", out, LayerGoldens.doubles(g.get("output")), ATOL, RTOL);
        }
    }

    /**
     * DeepSeek's router with a correction bias under which fewer than k experts of the kept groups
     * score above 0: the remaining choices must come from the kept groups (the dropped groups'
     * experts are excluded, -inf in the reference), not from dropped groups at a score of 0.
     */
    @ParameterizedTest
    @MethodSource("groupMaskModels")
    void groupedRouterNeverPicksDroppedGroups(String name) {
        JsonNode g = LayerGoldens.read(name, "router_group_mask.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            ModelConfig cfg = m.config();
            int layer = g.get("layer").asInt();
            LayerWeights.Moe moe = (LayerWeights.Moe) m.weights().layer(layer).ffn();
            float[] x = LayerGoldens.floats(g.get("input"));
            int n = x.length / cfg.hidden();
            float[] logits = routerLogits(moe, x, n, cfg.numExperts());
            var router = new GroupedSigmoidRouter(cfg.numExperts(), cfg.topK(), cfg.nGroup(), cfg.topkGroup(),
                    LayerGoldens.floats(g.get("correction_bias")), cfg.normTopkProb(), cfg.routedScalingFactor());
            assertRouting(name + " router with a negative correction bias", router.route(logits, new int[n], n), g.get("router"));
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
