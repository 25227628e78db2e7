package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.tensor.Kernels;
import io.epserve.tensor.RopeStyle;
import io.epserve.tensor.ScalarKernels;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.assertj.core.data.Offset;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Rotary embedding against HF's rotary classes (goldens/rope/rope.json): MixtralRotaryEmbedding
 * with default frequencies and rotate_half (NeoX); DeepseekV3RotaryEmbedding with
 * apply_rotary_pos_emb_interleave; and YaRN ({@code _compute_yarn_parameters}) for the real
 * DeepSeek-V3 rope_scaling (factor 40, original 4096, β 32/1, mscale = mscale_all_dim = 1, 64
 * rotary dims, max_position_embeddings 163840) and for a variant with mscale ≠ mscale_all_dim,
 * whose cos/sin carry an attention factor ≠ 1. Checks inv_freq, the cos/sin multiplier, the
 * {@link RopeTable} at a few positions up to the last one, the rotation kernel and its scalar twin,
 * and DeepSeek's softmax scale.
 *
 * <p>Tolerances. HF computes the angle position·inv_freq in float32, so its angle θ carries a
 * relative error of a few float32 ulps (its float32 inv_freq, then the float32 product), while
 * {@link RopeTable} takes the angle in double and rounds cos/sin once. Per frequency i at position
 * p the bound is {@code 1e-6 + 5e-7·θ} with θ = p·inv_freq[i] (≈ 1e-6 at small positions; at
 * p = 163839 the reference itself is only good to ~1e-2 rad on the fastest frequency). A rotated
 * element is allowed that bound times |x0| + |x1| of its pair, plus 1e-6. inv_freq: 1e-6 relative;
 * the cos/sin multiplier and the softmax scale: 1e-12 (both double on both sides).
 */
class LayerGoldenRopeTest {

    static Stream<String> cases() {
        List<String> names = new ArrayList<>();
        LayerGoldens.read("rope", "rope.json").get("cases").forEach(c -> names.add(c.get("name").asText()));
        return names.stream();
    }

    private static JsonNode theCase(String name) {
        for (JsonNode c : LayerGoldens.read("rope", "rope.json").get("cases")) {
            if (c.get("name").asText().equals(name)) {
                return c;
            }
        }
        throw new IllegalArgumentException(name);
    }

    private static double angleTolerance(int position, double invFreq) {
        return 1e-6 + 5e-7 * position * invFreq;
    }

    @ParameterizedTest
    @MethodSource("cases")
    void ropeMatchesReference(String name) {
        JsonNode c = theCase(name);
        ModelConfig cfg = ModelConfig.from(c.get("config"));
        int dim = cfg.ropeDim();
        int half = dim / 2;
        double[] invFreq = LayerGoldens.doubles(c.get("inv_freq"));
        assertThat(invFreq).as("%s: rotary dims", name).hasSize(half);
        boolean deinterleaved = c.get("layout").asText().equals("deinterleaved");
        assertThat(cfg.ropeStyle()).as(name).isEqualTo(deinterleaved ? RopeStyle.INTERLEAVED : RopeStyle.NEOX);

        // frequencies and the cos/sin multiplier (YaRN only: RopeTable's default path has neither)
        double scaling = c.get("attention_scaling").asDouble();
        if (cfg.ropeScaling() != null) {
            double[] inv = cfg.ropeScaling().inverseFrequencies(dim, cfg.ropeTheta(), cfg.maxPositions());
            for (int i = 0; i < half; i++) {
                assertThat(inv[i]).as("%s inv_freq[%d]", name, i).isCloseTo(invFreq[i], Offset.offset(1e-6 * invFreq[i]));
            }
            assertThat(cfg.ropeScaling().attentionScaling(cfg.maxPositions())).as("%s cos/sin multiplier", name)
                    .isCloseTo(scaling, Offset.offset(1e-12));
        } else {
            assertThat(scaling).isEqualTo(1.0);
        }
        if (c.has("softmax_scale")) {
            // DeepSeek: qk_head_dim^-0.5 · mscale(factor, mscale_all_dim)², the formula MoeTransformer uses;
            // the attention golden of deepseek_v3_nolora_yarn checks the scale in use end to end.
            double m = RopeScaling.yarnMscale(cfg.ropeScaling().factor(), cfg.ropeScaling().mscaleAllDim());
            assertThat(m * m / Math.sqrt(cfg.keyHeadDim())).as("%s softmax scale", name)
                    .isCloseTo(c.get("softmax_scale").asDouble(), Offset.offset(1e-12));
        }

        // the table at each position
        int[] positions = Fixtures.ints(c.get("positions"));
        RopeTable table = new RopeTable(cfg);
        table.ensure(positions[positions.length - 1] + 1);
        for (int pi = 0; pi < positions.length; pi++) {
            int p = positions[pi];
            for (int i = 0; i < half; i++) {
                double tol = angleTolerance(p, invFreq[i]);
                assertThat((double) table.cos()[table.offset(p) + i]).as("%s cos(pos %d, freq %d)", name, p, i)
                        .isCloseTo(c.get("cos").get(pi).get(i).asDouble(), Offset.offset(tol));
                assertThat((double) table.sin()[table.offset(p) + i]).as("%s sin(pos %d, freq %d)", name, p, i)
                        .isCloseTo(c.get("sin").get(pi).get(i).asDouble(), Offset.offset(tol));
            }
        }

        // the rotation of [heads, dim] vectors, vector kernel and scalar twin
        int heads = c.get("heads").asInt();
        for (boolean scalar : new boolean[] {false, true}) {
            for (int pi = 0; pi < positions.length; pi++) {
                int p = positions[pi];
                float[] x = LayerGoldens.floats(c.get("input").get(pi));
                float[] in = x.clone();
                if (scalar) {
                    ScalarKernels.rope(x, 0, heads, dim, dim, table.cos(), table.sin(), table.offset(p), cfg.ropeStyle());
                } else {
                    Kernels.rope(x, 0, heads, dim, dim, table.cos(), table.sin(), table.offset(p), cfg.ropeStyle());
                }
                double[] want = LayerGoldens.doubles(c.get("output").get(pi));
                for (int hh = 0; hh < heads; hh++) {
                    for (int j = 0; j < dim; j++) {
                        int freq = j % half;
                        // HF index j of this head -> our index (interleaved pairs stay in place here)
                        int ours = !deinterleaved ? j : j < half ? 2 * j : 2 * (j - half) + 1;
                        int pair0 = deinterleaved ? 2 * freq : freq;
                        int pair1 = deinterleaved ? 2 * freq + 1 : freq + half;
                        double mag = Math.abs(in[hh * dim + pair0]) + Math.abs(in[hh * dim + pair1]);
                        double tol = 1e-6 + angleTolerance(p, invFreq[freq]) * mag;
                        assertThat((double) x[hh * dim + ours]).as("%s%s rotated head %d dim %d at pos %d", name,
                                scalar ? " (scalar)" : "", hh, j, p).isCloseTo(want[hh * dim + j], Offset.offset(tol));
                    }
                }
            }
        }
    }
}
