package io.epserve.tensor;

/**
 * The scalar twin of every kernel: plain loops, the definition the vector kernels are tested
 * against (DESIGN.md §3.2). Single-threaded and obviously correct rather than fast.
 */
public final class ScalarKernels {
    private ScalarKernels() {}

    /** {@code y[i, n] = sum_k x[i, k] * w[n, k]} for {@code i < m}; x is [m, K], y is [m, N]. */
    public static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        int n = w.rows();
        int k = w.cols();
        if (w.dtype().quantized()) {
            matmulQuantized(x, xOff, m, w, y, yOff);
            return;
        }
        for (int i = 0; i < m; i++) {
            for (int r = 0; r < n; r++) {
                float acc = 0f;
                long base = (long) r * k;
                for (int c = 0; c < k; c++) {
                    acc += x[xOff + i * k + c] * w.getFloat(base + c);
                }
                y[yOff + i * n + r] = acc;
            }
        }
    }

    /**
     * The quantized twin: each weight row decoded by {@link Quantizer#dequantizeRow} (the
     * definition of the block formats), then the same plain loop as above. Activations stay float.
     */
    static void matmulQuantized(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        int n = w.rows();
        int k = w.cols();
        long rowBytes = w.dtype().bytesFor(k);
        float[] row = new float[k];
        for (int r = 0; r < n; r++) {
            Quantizer.dequantizeRow(w.data(), r * rowBytes, w.dtype(), row, 0, k);
            for (int i = 0; i < m; i++) {
                float acc = 0f;
                for (int c = 0; c < k; c++) {
                    acc += x[xOff + i * k + c] * row[c];
                }
                y[yOff + i * n + r] = acc;
            }
        }
    }

    /** Root-mean-square norm of each of {@code m} rows of length n; weight may be null. */
    public static void rmsnorm(float[] x, int xOff, int m, int n, Tensor weight, float eps, float[] out, int outOff) {
        for (int i = 0; i < m; i++) {
            double ss = 0;
            for (int j = 0; j < n; j++) {
                float v = x[xOff + i * n + j];
                ss += v * v;
            }
            float inv = (float) (1.0 / Math.sqrt(ss / n + eps));
            for (int j = 0; j < n; j++) {
                float wj = weight == null ? 1f : weight.getFloat(j);
                out[outOff + i * n + j] = x[xOff + i * n + j] * inv * wj;
            }
        }
    }

    /** In-place softmax of n values. */
    public static void softmax(float[] x, int off, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int i = 0; i < n; i++) {
            x[off + i] *= inv;
        }
    }

    /** {@code out[i] = silu(gate[i]) * up[i]}, SwiGLU's elementwise half. */
    public static void siluMul(float[] gate, int gOff, float[] up, int uOff, float[] out, int outOff, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[gOff + i];
            out[outOff + i] = g / (1f + (float) Math.exp(-g)) * up[uOff + i];
        }
    }

    /** {@code y[i] += a * x[i]}. */
    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        for (int i = 0; i < n; i++) {
            y[yOff + i] += a * x[xOff + i];
        }
    }

    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        float s = 0f;
        for (int i = 0; i < n; i++) {
            s += a[aOff + i] * b[bOff + i];
        }
        return s;
    }

    /**
     * Rotary position embedding of {@code nHeads} heads of length {@code headDim} in place; the
     * first {@code rotaryDim} dims of each head rotate. {@code cos}/{@code sin} hold rotaryDim/2
     * values for this position (frequency i at index i).
     * NEOX pairs dim i with i + rotaryDim/2 (HF rotate_half); INTERLEAVED pairs 2i with 2i+1.
     */
    public static void rope(float[] x, int off, int nHeads, int headDim, int rotaryDim,
                            float[] cos, float[] sin, int csOff, RopeStyle style) {
        int half = rotaryDim / 2;
        for (int h = 0; h < nHeads; h++) {
            int b = off + h * headDim;
            for (int i = 0; i < half; i++) {
                int i0 = style == RopeStyle.NEOX ? b + i : b + 2 * i;
                int i1 = style == RopeStyle.NEOX ? b + i + half : b + 2 * i + 1;
                float c = cos[csOff + i];
                float s = sin[csOff + i];
                float x0 = x[i0];
                float x1 = x[i1];
                x[i0] = x0 * c - x1 * s;
                x[i1] = x1 * c + x0 * s;
            }
        }
    }

    /**
     * Causal attention of one query token against {@code nKeys} cached positions.
     * q: [nHeads, headDimK] at qOff. keys: rows of {@code kvStride} floats per position, head g's
     * key at {@code g * headDimK}; values likewise with {@code headDimV}. Query head h reads
     * KV head {@code h / (nHeads / nKvHeads)} (grouped-query attention). out: [nHeads, headDimV].
     * scores needs nKeys floats.
     */
    public static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff,
                                 int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                 int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        int group = nHeads / nKvHeads;
        for (int h = 0; h < nHeads; h++) {
            int g = h / group;
            for (int t = 0; t < nKeys; t++) {
                float s = 0f;
                int kb = kOff + t * kvStrideK + g * headDimK;
                for (int d = 0; d < headDimK; d++) {
                    s += q[qOff + h * headDimK + d] * keys[kb + d];
                }
                scores[t] = s * scale;
            }
            softmax(scores, 0, nKeys);
            int ob = outOff + h * headDimV;
            for (int d = 0; d < headDimV; d++) {
                out[ob + d] = 0f;
            }
            for (int t = 0; t < nKeys; t++) {
                int vb = vOff + t * kvStrideV + g * headDimV;
                float p = scores[t];
                for (int d = 0; d < headDimV; d++) {
                    out[ob + d] += p * values[vb + d];
                }
            }
        }
    }

    /**
     * {@link #attention} over keys/values at arbitrary rows (a paged KV cache): key t of the query
     * is row {@code rows[t]} of {@code keys} (stride kvStrideK) and of {@code values}.
     */
    public static void attentionRows(float[] q, int qOff, float[] keys, float[] values, int[] rows,
                                     int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                     int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        int group = nHeads / nKvHeads;
        for (int h = 0; h < nHeads; h++) {
            int g = h / group;
            for (int t = 0; t < nKeys; t++) {
                float s = 0f;
                int kb = rows[t] * kvStrideK + g * headDimK;
                for (int d = 0; d < headDimK; d++) {
                    s += q[qOff + h * headDimK + d] * keys[kb + d];
                }
                scores[t] = s * scale;
            }
            softmax(scores, 0, nKeys);
            int ob = outOff + h * headDimV;
            for (int d = 0; d < headDimV; d++) {
                out[ob + d] = 0f;
            }
            for (int t = 0; t < nKeys; t++) {
                int vb = rows[t] * kvStrideV + g * headDimV;
                float p = scores[t];
                for (int d = 0; d < headDimV; d++) {
                    out[ob + d] += p * values[vb + d];
                }
            }
        }
    }
}
