package io.epserve.format.gguf;

import io.epserve.format.CheckpointException;
import io.epserve.tensor.Quantizer;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Decodes ggml tensor bytes to float, value for value as ggml-quants.c's {@code dequantize_row_*}
 * does: the types epserve computes on through {@link Quantizer} (Q8_0, Q4_0, Q4_K) and plain
 * floats, plus the K-quants epserve has no kernel for, which are decoded once at load.
 *
 * <pre>
 *  Q5_K, 256 weights, 176 bytes
 *  0      2      4             16          48                     176
 *  +------+------+-------------+-----------+----------------------+
 *  | d f16| dmin | scales: 12 B| qh: 32 B  | qs: 128 B (low 4 bits)|   scales/mins as Q4_K's (6 bits)
 *  +------+------+-------------+-----------+----------------------+
 *  chunk c (64 weights) of qs byte l: low nibble → weight 64c+l (sub-block 2c), high → 64c+32+l;
 *  the 5th bit of weight 64c+l is bit 2c of qh[l], of weight 64c+32+l bit 2c+1.
 *  w = d·sc[s]·q − dmin·m[s]
 *
 *  Q6_K, 256 weights, 210 bytes
 *  0                 128          192                 208    210
 *  +-----------------+------------+-------------------+------+
 *  | ql: 128 B (low  | qh: 64 B   | scales: 16 × int8 | d f16|
 *  | 4 bits)         | (high 2)   | (one per 16)      |      |
 *  +-----------------+------------+-------------------+------+
 *  half h (128 weights) uses ql[64h..], qh[32h..], scales[8h..]; for l &lt; 32:
 *    q(l)    = (ql[l] &amp; 15)    | (qh[l] &amp; 3) &lt;&lt; 4          q(l+64) = (ql[l] &gt;&gt; 4)    | (qh[l] &gt;&gt; 4 &amp; 3) &lt;&lt; 4
 *    q(l+32) = (ql[l+32] &amp; 15) | (qh[l] &gt;&gt; 2 &amp; 3) &lt;&lt; 4     q(l+96) = (ql[l+32] &gt;&gt; 4) | (qh[l] &gt;&gt; 6) &lt;&lt; 4
 *  w(i) = (d·scales[i / 16])·(q(i) − 32)
 * </pre>
 */
public final class GgmlDequantizer {
    private GgmlDequantizer() {}

    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * Decodes {@code n} elements (whole blocks) of {@code type} starting at byte {@code off} of
     * {@code s} into {@code y[yOff..]}; {@code where} names the tensor in errors.
     */
    public static void decode(GgmlType type, MemorySegment s, long off, float[] y, int yOff, int n, String where) {
        if (n % type.blockSize() != 0) {
            throw new IllegalArgumentException(where + ": " + n + " elements are not whole " + type + " blocks");
        }
        switch (type) {
            case F32 -> {
                for (int i = 0; i < n; i++) {
                    y[yOff + i] = s.get(F32, off + 4L * i);
                }
            }
            case F16 -> {
                for (int i = 0; i < n; i++) {
                    y[yOff + i] = Float.float16ToFloat(s.get(I16, off + 2L * i));
                }
            }
            case BF16 -> {
                for (int i = 0; i < n; i++) {
                    y[yOff + i] = Float.intBitsToFloat((s.get(I16, off + 2L * i) & 0xFFFF) << 16);
                }
            }
            case Q8_0, Q4_0, Q4_K -> Quantizer.dequantizeRow(s, off, type.dtype(), y, yOff, n);
            case Q5_K -> {
                for (int b = 0; b < n / 256; b++) {
                    q5K(s, off + 176L * b, y, yOff + 256 * b);
                }
            }
            case Q6_K -> {
                for (int b = 0; b < n / 256; b++) {
                    q6K(s, off + 210L * b, y, yOff + 256 * b);
                }
            }
            default -> throw new CheckpointException(where + " has ggml type " + type
                    + ", which epserve does not read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)");
        }
    }

    private static int u8(MemorySegment s, long at) {
        return Byte.toUnsignedInt(s.get(ValueLayout.JAVA_BYTE, at));
    }

    private static float f16(MemorySegment s, long at) {
        return Float.float16ToFloat(s.get(I16, at));
    }

    /** ggml's get_scale_min_k4: 6-bit scale (j, 0) or min (j, 1) of sub-block j from the 12 packed bytes at q. */
    private static int scaleMinK4(MemorySegment s, long q, int j, boolean min) {
        if (j < 4) {
            return u8(s, q + j + (min ? 4 : 0)) & 63;
        }
        if (!min) {
            return (u8(s, q + j + 4) & 0xF) | ((u8(s, q + j - 4) >> 6) << 4);
        }
        return (u8(s, q + j + 4) >> 4) | ((u8(s, q + j) >> 6) << 4);
    }

    private static void q5K(MemorySegment s, long b, float[] y, int o) {
        float d = f16(s, b);
        float dmin = f16(s, b + 2);
        long scales = b + 4;
        long qh = b + 16;
        long ql = b + 48;
        for (int c = 0; c < 4; c++) {
            float d1 = d * scaleMinK4(s, scales, 2 * c, false);
            float m1 = dmin * scaleMinK4(s, scales, 2 * c, true);
            float d2 = d * scaleMinK4(s, scales, 2 * c + 1, false);
            float m2 = dmin * scaleMinK4(s, scales, 2 * c + 1, true);
            int u1 = 1 << (2 * c);
            int u2 = 2 << (2 * c);
            for (int l = 0; l < 32; l++) {
                int q = u8(s, ql + 32L * c + l);
                int h = u8(s, qh + l);
                y[o + 64 * c + l] = d1 * ((q & 0xF) + ((h & u1) != 0 ? 16 : 0)) - m1;
                y[o + 64 * c + 32 + l] = d2 * ((q >> 4) + ((h & u2) != 0 ? 16 : 0)) - m2;
            }
        }
    }

    private static void q6K(MemorySegment s, long b, float[] y, int o) {
        float d = f16(s, b + 208);
        for (int half = 0; half < 2; half++) {
            long ql = b + 64L * half;
            long qh = b + 128 + 32L * half;
            long sc = b + 192 + 8L * half;
            int yo = o + 128 * half;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int h = u8(s, qh + l);
                int a = u8(s, ql + l);
                int c = u8(s, ql + l + 32);
                int q1 = ((a & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((c & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = ((c >> 4) | (((h >> 6) & 3) << 4)) - 32;
                y[yo + l] = d * s.get(ValueLayout.JAVA_BYTE, sc + is) * q1;
                y[yo + l + 32] = d * s.get(ValueLayout.JAVA_BYTE, sc + is + 2) * q2;
                y[yo + l + 64] = d * s.get(ValueLayout.JAVA_BYTE, sc + is + 4) * q3;
                y[yo + l + 96] = d * s.get(ValueLayout.JAVA_BYTE, sc + is + 6) * q4;
            }
        }
    }
}
