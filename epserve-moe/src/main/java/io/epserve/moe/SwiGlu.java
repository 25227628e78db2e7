package io.epserve.moe;

import io.epserve.tensor.Kernels;
import io.epserve.tensor.MatmulGroup;

/** The SwiGLU FFN over a group of tokens, as matrix·matrix products (all tokens of one expert together). */
public final class SwiGlu {
    private SwiGlu() {}

    /**
     * {@code out[i] = down · (silu(gate · x[i]) ⊙ (up · x[i]))} for {@code n} rows of x (each
     * {@code hidden} long, at xOff), into out at outOff. scratch needs {@code 2 * n * intermediate}
     * floats.
     */
    public static void forward(ExpertWeights w, float[] x, int xOff, int n, float[] out, int outOff, float[] scratch) {
        MatmulGroup g = GROUP.get();
        try {
            addGateUp(g.clear(), w, x, xOff, n, scratch, 0);
            Kernels.matmul(g);
            activate(w, scratch, 0, n);
            addDown(g.clear(), w, scratch, 0, n, out, outOff);
            Kernels.matmul(g);
            downBias(w, out, outOff, n);
        } finally {
            g.clear();
        }
    }

    /** A group per thread for {@link #forward}: gate and up share one parallel call (one barrier, one pass of work). */
    private static final ThreadLocal<MatmulGroup> GROUP = ThreadLocal.withInitial(MatmulGroup::new);

    /**
     * Adds to g the gate and up projections of n rows of x: gate into {@code scratch[off, off + n·I)},
     * up into the n·I floats after it (I = intermediate). Run g, then {@link #activate}.
     */
    public static void addGateUp(MatmulGroup g, ExpertWeights w, float[] x, int xOff, int n, float[] scratch, int off) {
        g.add(x, xOff, n, w.gate(), scratch, off).add(x, xOff, n, w.up(), scratch, off + n * w.intermediate());
    }

    /** Biases and the gated activation over what {@link #addGateUp} computed at off; the result replaces the gate part. */
    public static void activate(ExpertWeights w, float[] scratch, int off, int n) {
        int inter = w.intermediate();
        int upOff = off + n * inter;
        addBias(scratch, off, n, w.gateBias());
        addBias(scratch, upOff, n, w.upBias());
        switch (w.activation()) {
            case GatedActivation.Silu s -> Kernels.siluMul(scratch, off, scratch, upOff, scratch, off, n * inter);
            case GatedActivation.ClampedSwiGlu c -> clampedSwiGlu(c, scratch, off, upOff, n * inter);
        }
    }

    /** Adds to g the down projection of n activated rows at scratch[off] into out at outOff; run g, then {@link #downBias}. */
    public static void addDown(MatmulGroup g, ExpertWeights w, float[] scratch, int off, int n, float[] out, int outOff) {
        g.add(scratch, off, n, w.down(), out, outOff);
    }

    /** The down projection's bias, where the expert has one. */
    public static void downBias(ExpertWeights w, float[] out, int outOff, int n) {
        addBias(out, outOff, n, w.downBias());
    }

    /** scratch[off + i] = g · sigmoid(alpha · g) · (u + 1) with g = min(gate, limit), u = clamp(up, ±limit); up at upOff. */
    static void clampedSwiGlu(GatedActivation.ClampedSwiGlu c, float[] scratch, int off, int upOff, int len) {
        float limit = c.limit();
        for (int i = 0; i < len; i++) {
            float g = Math.min(scratch[off + i], limit);
            float u = Math.max(-limit, Math.min(scratch[upOff + i], limit));
            scratch[off + i] = g / (1f + (float) Math.exp(-c.alpha() * g)) * (u + 1f);
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
