package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import io.epserve.tensor.Tensor;
import org.junit.jupiter.api.Test;

/** The gated FFN with gpt-oss's biases and clamped activation against a direct float64 evaluation. */
class SwiGluTest {
    static final int H = 3;
    static final int I = 2;
    static final float[] GATE = {4f, -1f, 2f, 0.5f, 3f, -2f};
    static final float[] UP = {-5f, 1f, 2f, 1f, 1f, 1f};
    static final float[] DOWN = {1f, -1f, 0.5f, 2f, -0.25f, 1f};

    static ExpertWeights weights(float[] gb, float[] ub, float[] db, GatedActivation act) {
        return new ExpertWeights(Tensor.ofFloats("g", GATE, I, H), Tensor.ofFloats("u", UP, I, H), Tensor.ofFloats("d", DOWN, H, I),
                gb, ub, db, act);
    }

    @Test
    void clampedSwiGluWithBiasesIsGptOssMlp() {
        float[] gb = {0.5f, -0.25f};
        float[] ub = {0.1f, 0.2f};
        float[] db = {1f, 2f, 3f};
        float alpha = 1.702f;
        float limit = 7f;
        ExpertWeights w = weights(gb, ub, db, new GatedActivation.ClampedSwiGlu(alpha, limit));
        // token 0's first gate is 4·1.5 + 2 + 6 + 0.5 = 14.5 and its first up −15.4: both clamps act
        float[] x = {1.5f, -2f, 3f, 0.2f, 0.1f, -0.3f};
        float[] out = new float[2 * H];
        SwiGlu.forward(w, x, 0, 2, out, 0, new float[2 * 2 * I]);
        for (int t = 0; t < 2; t++) {
            double[] act = new double[I];
            for (int i = 0; i < I; i++) {
                double g = gb[i];
                double u = ub[i];
                for (int c = 0; c < H; c++) {
                    g += GATE[i * H + c] * x[t * H + c];
                    u += UP[i * H + c] * x[t * H + c];
                }
                g = Math.min(g, limit);
                u = Math.max(-limit, Math.min(u, limit));
                act[i] = g / (1 + Math.exp(-alpha * g)) * (u + 1);
            }
            for (int r = 0; r < H; r++) {
                double o = db[r];
                for (int i = 0; i < I; i++) {
                    o += DOWN[r * I + i] * act[i];
                }
                assertThat((double) out[t * H + r]).as("token %d row %d", t, r).isCloseTo(o, within(1e-4));
            }
        }
    }

    @Test
    void biasedExpertsAreNotSplitIntoShards() {
        ExpertWeights w = weights(null, null, new float[H], GatedActivation.SILU);
        assertThatThrownBy(() -> ExpertShards.shard(w, 0, 2)).hasMessageContaining("biases");
        assertThat(ExpertShards.shard(weights(null, null, null, GatedActivation.SILU), 0, 2).intermediate()).isEqualTo(1);
    }
}
