package io.epserve.tensor;

import java.util.Arrays;

/**
 * Activation rows quantized to 8 bits for the integer dot products of
 * {@link QuantizedActivations#INT8}: the tokens of one matmul, each row of k values cut into
 * blocks of {@link #BLOCK}, each block stored as a float scale and 32 integers in [−127, 127].
 *
 * <pre>
 *   per block of 32 values x_j:
 *     amax = max_j |x_j|
 *     NaN or ±∞ among the x_j      → d = NaN, q_j = 0   (every product with the block is NaN)
 *     amax &lt; 2^-100 (zero, or tiny) → d = 0,   q_j = 0   (products lose at most 2^-100 · Σ|w|)
 *     otherwise                     id = 127 / amax   (one float rounding)
 *                                   d  = f16(amax / 127), widened exactly (round to nearest even, as the CPU's vcvtps2ph)
 *                                   q_j = rint(x_j · id)  (round half to even; |x_j · id| &lt; 127.5, so q_j ∈ [−127, 127])
 *     sum = Σ_j q_j                 (for the offsets of Q4_K weights, see ScalarKernels.dotInt8)
 * </pre>
 * This is llama.cpp's {@code quantize_row_q8_0} (AVX2 path), so a block is its {@code block_q8_0}
 * bit for bit: the same q for the same x, and d rounded to f16 as llama.cpp stores it. A float d
 * would be 13 bits more precise, but measured against llama.cpp's own log-probabilities on the
 * GGUF fixtures (GgufModelTest) it moved epserve further from llama.cpp (Q4_0 file: 0.084 against
 * 0.017 with the f16 d), while the f16 rounding adds at most 2^-12 relative to every product of a
 * block, a tenth of the 8-bit rounding itself: |x − d·q| ≤ d/2 + 127·|d − amax/127| ≤ 0.57·d.
 *
 * <p>{@link #quantizeRow} is the definition; the native library computes the same bytes and
 * scales (tested) and is used when it is loaded. A token's row is quantized the same way
 * whatever else is in its matmul, which keeps int8 products batch-invariant.
 */
final class Int8Activations {
    /** Values per activation block (one scale each): the block size of Q8_0 and Q4_0 weights, a Q4_K sub-block. */
    static final int BLOCK = 32;
    /** Blocks whose largest magnitude is below this are stored as zeros (see the class comment). */
    static final float TINY = 0x1p-100f;

    /** Quantized values of the current rows: row i's block b at {@code q[i·k + 32b]}. */
    byte[] q = new byte[0];
    /** Scales: row i's block b at {@code d[i·k/32 + b]}. */
    float[] d = new float[0];
    /** Sums of each block's 32 integers, indexed as {@link #d}. */
    int[] sum = new int[0];

    /**
     * Quantizes m rows of k values (whole blocks) from x at xOff into {@link #q} and {@link #d},
     * replacing what they held; grows them as needed and never shrinks them.
     */
    void quantize(float[] x, int xOff, int m, int k) {
        if (k % BLOCK != 0) {
            throw new IllegalArgumentException("int8 activations: rows of " + k + " values are not whole blocks of " + BLOCK);
        }
        int values = Math.multiplyExact(m, k);
        if (q.length < values) {
            q = new byte[Math.max(values, q.length * 2)];
        }
        int blocks = values / BLOCK;
        if (d.length < blocks) {
            d = new float[Math.max(blocks, d.length * 2)];
            sum = new int[d.length];
        }
        // Rows are whole blocks and lie back to back, so the m rows are quantized as one run of blocks.
        if (NativeKernels.ENABLED) {
            NativeKernels.quantizeInt8(x, xOff, blocks, q, d, sum);
        } else {
            quantizeRow(x, xOff, blocks, q, 0, d, 0, sum, 0);
        }
    }

    /** The definition (see the class comment): {@code blocks} blocks of x from xOff into q from qOff, d from dOff and sum from sOff. */
    static void quantizeRow(float[] x, int xOff, int blocks, byte[] q, int qOff, float[] d, int dOff, int[] sum, int sOff) {
        for (int b = 0; b < blocks; b++) {
            int xb = xOff + b * BLOCK;
            int qb = qOff + b * BLOCK;
            float amax = 0f;
            for (int j = 0; j < BLOCK; j++) {
                amax = Math.max(amax, Math.abs(x[xb + j]));
            }
            if (!(amax <= Float.MAX_VALUE)) {
                d[dOff + b] = Float.NaN;
                Arrays.fill(q, qb, qb + BLOCK, (byte) 0);
            } else if (amax < TINY) {
                d[dOff + b] = 0f;
                Arrays.fill(q, qb, qb + BLOCK, (byte) 0);
            } else {
                float id = 127f / amax;
                d[dOff + b] = Float.float16ToFloat(Float.floatToFloat16(amax / 127f));
                for (int j = 0; j < BLOCK; j++) {
                    q[qb + j] = (byte) (int) Math.rint(x[xb + j] * id);
                }
            }
            int s = 0;
            for (int j = 0; j < BLOCK; j++) {
                s += q[qb + j];
            }
            sum[sOff + b] = s;
        }
    }
}
