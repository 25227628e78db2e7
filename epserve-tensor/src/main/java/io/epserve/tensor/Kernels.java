package io.epserve.tensor;

/**
 * The kernels the model calls. Every method here has a scalar twin in {@link ScalarKernels};
 * this facade picks the fast implementation, {@link VectorKernels}. Model code never touches the
 * Vector API itself.
 *
 * <p>Contract for the batched kernels: the result for one row (token) is bitwise the same
 * whatever the number of rows in the call and however work is split across threads, so a
 * token's logits do not depend on what else is in its batch.
 *
 * <p>Parallel kernels (matmul, large attention) run on {@link KernelPool#common()}; its size is
 * the system property {@code epserve.threads} (default: available processors). Setting
 * {@code -Depserve.kernels=scalar} routes every call to {@link ScalarKernels} (debugging only:
 * slow, single-threaded); {@code -Depserve.kernels=vector} keeps quantized products on the Vector
 * API even where the native library could take them (same results; for comparisons).
 * {@code -Depserve.quant-activations=int8|f32} chooses how products over block-quantized weights
 * treat their activations (see {@link QuantizedActivations}; int8 by default).
 */
public final class Kernels {
    private Kernels() {}

    private static final boolean SCALAR = "scalar".equals(System.getProperty("epserve.kernels"));

    /**
     * {@code y[i, n] = sum_k x[i, k] * w[n, k]}: x is [m, K] at xOff, y is [m, N] at yOff, w is [N, K]
     * in any {@link DType}: plain floats, or GGUF blocks (Q8_0, Q4_0, Q4_K) computed on directly.
     */
    public static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        if (SCALAR) {
            ScalarKernels.matmul(x, xOff, m, w, y, yOff);
        } else {
            VectorKernels.matmul(x, xOff, m, w, y, yOff);
        }
    }

    /**
     * How products over block-quantized weights run in this JVM: the activation scheme
     * ({@link QuantizedActivations}) and the kernels, the native library (see NativeKernels) or
     * the Vector API, and why; for benchmarks and logs. Both kernels compute the same bits.
     */
    public static String quantizedMatvecKernels() {
        String activations = QuantizedActivations.configured().label() + " activations ("
                + QuantizedActivations.PROPERTY + "), ";
        return activations + (SCALAR ? "scalar kernels (epserve.kernels=scalar)" : NativeKernels.status());
    }

    public static void rmsnorm(float[] x, int xOff, int m, int n, Tensor weight, float eps, float[] out, int outOff) {
        if (SCALAR) {
            ScalarKernels.rmsnorm(x, xOff, m, n, weight, eps, out, outOff);
        } else {
            VectorKernels.rmsnorm(x, xOff, m, n, weight, eps, out, outOff);
        }
    }

    public static void softmax(float[] x, int off, int n) {
        if (SCALAR) {
            ScalarKernels.softmax(x, off, n);
        } else {
            VectorKernels.softmax(x, off, n);
        }
    }

    /** {@code out = silu(gate) * up}; out may be gate or up at the same offset. */
    public static void siluMul(float[] gate, int gOff, float[] up, int uOff, float[] out, int outOff, int n) {
        if (SCALAR) {
            ScalarKernels.siluMul(gate, gOff, up, uOff, out, outOff, n);
        } else {
            VectorKernels.siluMul(gate, gOff, up, uOff, out, outOff, n);
        }
    }

    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        if (SCALAR) {
            ScalarKernels.axpy(a, x, xOff, y, yOff, n);
        } else {
            VectorKernels.axpy(a, x, xOff, y, yOff, n);
        }
    }

    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        return SCALAR ? ScalarKernels.dot(a, aOff, b, bOff, n) : VectorKernels.dot(a, aOff, b, bOff, n);
    }

    public static void rope(float[] x, int off, int nHeads, int headDim, int rotaryDim,
                            float[] cos, float[] sin, int csOff, RopeStyle style) {
        if (SCALAR) {
            ScalarKernels.rope(x, off, nHeads, headDim, rotaryDim, cos, sin, csOff, style);
        } else {
            VectorKernels.rope(x, off, nHeads, headDim, rotaryDim, cos, sin, csOff, style);
        }
    }

    /**
     * One query token against nKeys cached positions (see {@link ScalarKernels#attention}).
     * {@code scores} (nKeys floats) is scratch; when heads run in parallel, per-thread buffers
     * are used instead and it is left untouched.
     */
    public static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff,
                                 int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                 int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        if (SCALAR) {
            ScalarKernels.attention(q, qOff, keys, kOff, values, vOff, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                    headDimK, headDimV, scale, out, outOff, scores);
        } else {
            VectorKernels.attention(q, qOff, keys, kOff, values, vOff, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                    headDimK, headDimV, scale, out, outOff, scores);
        }
    }

    /** Attention over keys/values at arbitrary rows (paged KV cache); see {@link ScalarKernels#attentionRows}. */
    public static void attentionRows(float[] q, int qOff, float[] keys, float[] values, int[] rows,
                                     int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                     int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        if (SCALAR) {
            ScalarKernels.attentionRows(q, qOff, keys, values, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                    headDimK, headDimV, scale, out, outOff, scores);
        } else {
            VectorKernels.attentionRows(q, qOff, keys, values, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                    headDimK, headDimV, scale, out, outOff, scores);
        }
    }
}
