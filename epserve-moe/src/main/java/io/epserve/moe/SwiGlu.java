package io.epserve.moe;

import io.epserve.tensor.Kernels;

/** The SwiGLU FFN over a group of tokens, as matrix·matrix products (all tokens of one expert together). */
public final class SwiGlu {
    private SwiGlu() {}

    /**
     * {@code out[i] = down · (silu(gate · x[i]) ⊙ (up · x[i]))} for {@code n} rows of x (each
     * {@code hidden} long, at xOff), into out at outOff. scratch needs {@code 2 * n * intermediate}
     * floats.
     */
    public static void forward(ExpertWeights w, float[] x, int xOff, int n, float[] out, int outOff, float[] scratch) {
        int inter = w.intermediate();
        int upOff = n * inter;
        Kernels.matmul(x, xOff, n, w.gate(), scratch, 0);
        Kernels.matmul(x, xOff, n, w.up(), scratch, upOff);
        addBias(scratch, 0, n, w.gateBias());
        addBias(scratch, upOff, n, w.upBias());
        switch (w.activation()) {
            case GatedActivation.Silu s -> Kernels.siluMul(scratch, 0, scratch, upOff, scratch, 0, n * inter);
            case GatedActivation.ClampedSwiGlu c -> clampedSwiGlu(c, scratch, upOff, n * inter);
        }
        Kernels.matmul(scratch, 0, n, w.down(), out, outOff);
        addBias(out, outOff, n, w.downBias());
    }

    /** scratch[i] = g · sigmoid(alpha · g) · (u + 1) with g = min(gate, limit), u = clamp(up, ±limit); up at upOff. */
    static void clampedSwiGlu(GatedActivation.ClampedSwiGlu c, float[] scratch, int upOff, int len) {
        float limit = c.limit();
        for (int i = 0; i < len; i++) {
            float g = Math.min(scratch[i], limit);
            float u = Math.max(-limit, Math.min(scratch[upOff + i], limit));
            scratch[i] = g / (1f + (float) Math.exp(-c.alpha() * g)) * (u + 1f);
        }
    }

    private static void addBias(float[] y, int off, int n, float[] bias) {
        if (bias == null) {
            return;
        }
        for (int i = 0; i < n; i++) {
            Kernels.axpy(1f, bias, 0, y, off + i * bias.length, bias.length);
        }
    }
}
