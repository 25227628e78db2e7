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
        Kernels.siluMul(scratch, 0, scratch, upOff, scratch, 0, n * inter);
        Kernels.matmul(scratch, 0, n, w.down(), out, outOff);
    }
}
