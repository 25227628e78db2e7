package io.epserve.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The scalar twin of every kernel: plain loops, the definition the vector kernels are tested
 * against (DESIGN.md §3.2). Single-threaded and obviously correct rather than fast.
 */
public final class ScalarKernels {
    private ScalarKernels() {}

    /**
     * {@code y[i, n] = sum_k x[i, k] * w[n, k]} for {@code i < m}; x is [m, K], y is [m, N].
     * Quantized weights use this JVM's {@link QuantizedActivations} scheme.
     */
    public static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        matmul(x, xOff, m, w, y, yOff, QuantizedActivations.configured());
    }

    /** {@link #matmul(float[], int, int, Tensor, float[], int)} with quantized weights under the given scheme. */
    static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff, QuantizedActivations activations) {
        int n = w.rows();
        int k = w.cols();
        if (w.dtype().quantized()) {
            if (activations == QuantizedActivations.INT8 && Int8Kernels.handles(w.dtype())) {
                matmulInt8(x, xOff, m, w, y, yOff);
            } else {
                matmulQuantized(x, xOff, m, w, y, yOff);
            }
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

    /**
     * The int8-activation twin ({@link QuantizedActivations#INT8}): each token's row quantized by
     * {@link Int8Activations#quantizeRow}, then {@link #dotInt8} with every weight row.
     */
    static void matmulInt8(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        int n = w.rows();
        int k = w.cols();
        DType dt = w.dtype();
        long rowBytes = dt.bytesFor(k);
        int blocks = k / Int8Activations.BLOCK;
        byte[] q = new byte[k];
        float[] d = new float[blocks];
        int[] sum = new int[blocks];
        for (int i = 0; i < m; i++) {
            Int8Activations.quantizeRow(x, xOff + i * k, blocks, q, 0, d, 0, sum, 0);
            for (int r = 0; r < n; r++) {
                y[yOff + i * n + r] = dotInt8(q, 0, d, 0, w.data(), r * rowBytes, dt, k);
            }
        }
    }

    /**
     * The definition of an int8-activation dot product: one token's activations quantized per
     * block b of 32 (scale {@code d[dOff + b]}, 32 integers of [−127, 127] at {@code q[qOff + 32b]},
     * see {@link Int8Activations}) with one row of k weights (whole blocks of dt at byte
     * {@code row} of seg). Each activation block meets the 32 weights of the same columns: a
     * Q8_0 / Q4_0 block, or one sub-block s of a Q4_K super-block.
     * <pre>
     *   per activation block b, with the weights' integer quants w_j and their scale f (and
     *   offset g, Q4_K only):
     *     Q8_0: w_j = the int8,       f = dw (the block's f16, widened exactly)
     *     Q4_0: w_j = nibble − 8,     f = dw
     *     Q4_K: w_j = nibble (0..15), f = d·sc[s], g = −(dmin·m[s])   (exact products; weight = f·w + g)
     *     p_l   = sum_{i<4} w_{4l+i} · q_{4l+i}    for lanes l = 0..7 (exact integers, |p_l| ≤ 65024)
     *     acc_l = fma(f · d_b, p_l, acc_l)        (f · d_b one float rounding; acc starts at 0; blocks in order)
     *     Q4_K: macc = fma(g · d_b, sum_j q_j, macc)   (macc starts at 0; the offsets' share)
     *   y = ((acc_0+acc_1)+(acc_2+acc_3))+((acc_4+acc_5)+(acc_6+acc_7))   (Q4_K: that + macc)
     * </pre>
     * The 8 lanes of 4 consecutive products are what AVX2's {@code vpmaddubsw} + {@code vpmaddwd}
     * leave in a 256-bit register (as llama.cpp's {@code ggml_vec_dot_q8_0_q8_0} uses them), so
     * the native kernel computes this with one int-to-float conversion and one fma per 32 weights;
     * the Vector API kernel ({@link Int8Kernels}) gets the same lanes with 16-bit multiplies. The
     * scheme does not depend on the machine's vector width. Q4_K keeps 32-value activation blocks
     * (llama.cpp's Q8_K uses one scale per 256): one activation format serves every weight type.
     */
    static float dotInt8(byte[] q, int qOff, float[] d, int dOff, MemorySegment seg, long row, DType dt, int k) {
        float[] acc = new float[8];
        float macc = 0f;
        int[] w = new int[32];
        for (int b = 0; b < k / Int8Activations.BLOCK; b++) {
            float f;
            float g = 0f;
            switch (dt) {
                case Q8_0 -> {
                    long o = row + (long) b * dt.blockBytes();
                    for (int j = 0; j < 32; j++) {
                        w[j] = seg.get(ValueLayout.JAVA_BYTE, o + Quantizer.Q_QS + j);
                    }
                    f = Quantizer.d(seg, o);
                }
                case Q4_0 -> {
                    long o = row + (long) b * dt.blockBytes();
                    for (int j = 0; j < 16; j++) {
                        int byt = seg.get(ValueLayout.JAVA_BYTE, o + Quantizer.Q_QS + j);
                        w[j] = (byt & 15) - 8;
                        w[j + 16] = ((byt >> 4) & 15) - 8;
                    }
                    f = Quantizer.d(seg, o);
                }
                case Q4_K -> {
                    long o = row + (long) (b / 8) * dt.blockBytes();
                    int sub = b % 8;
                    long qs = o + Quantizer.K_QS + (sub >> 1) * 32L;
                    int shift = (sub & 1) * 4;
                    for (int j = 0; j < 32; j++) {
                        w[j] = (seg.get(ValueLayout.JAVA_BYTE, qs + j) >> shift) & 15;
                    }
                    f = Quantizer.d(seg, o + Quantizer.K_D) * Quantizer.scaleK(seg, o, sub);
                    g = -(Quantizer.d(seg, o + Quantizer.K_DMIN) * Quantizer.minK(seg, o, sub));
                }
                default -> throw new IllegalArgumentException(dt + " has no int8-activation product");
            }
            float s = f * d[dOff + b];
            for (int l = 0; l < 8; l++) {
                int p = 0;
                for (int i = 0; i < 4; i++) {
                    p += w[4 * l + i] * q[qOff + 32 * b + 4 * l + i];
                }
                acc[l] = Math.fma(s, (float) p, acc[l]);
            }
            if (dt == DType.Q4_K) {
                int sum = 0;
                for (int j = 0; j < 32; j++) {
                    sum += q[qOff + 32 * b + j];
                }
                macc = Math.fma(g * d[dOff + b], (float) sum, macc);
            }
        }
        float y = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        // only Q4_K adds its offsets' share: adding a zero would turn a -0 into +0
        return dt == DType.Q4_K ? y + macc : y;
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
