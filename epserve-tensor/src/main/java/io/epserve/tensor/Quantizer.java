package io.epserve.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * GGUF's block quantization formats, byte for byte as ggml lays them out (ggml-common.h
 * {@code block_q8_0}, {@code block_q4_0}, {@code block_q4_K}; decoded as ggml-quants.c's
 * {@code dequantize_row_*} does). All multi-byte fields are little-endian; a row of a quantized
 * matrix is a run of whole blocks along the input dimension.
 *
 * <pre>
 *  Q8_0, 32 weights, 34 bytes                     w[i] = d · qs[i]
 *  0      2                                  34
 *  +------+----------------------------------+
 *  | d f16| qs: 32 × int8, element i at 2+i  |
 *  +------+----------------------------------+
 *
 *  Q4_0, 32 weights, 18 bytes                     w[i] = d · (q[i] − 8)
 *  0      2                  18
 *  +------+------------------+     byte 2+j: low nibble = q[j], high nibble = q[j+16]   (j < 16)
 *  | d f16| qs: 16 × 2 × u4  |
 *  +------+------------------+
 *
 *  Q4_K, 256 weights, 144 bytes                   8 sub-blocks s of 32 weights:
 *  0      2      4             16                         144
 *  +------+------+-------------+--------------------------+   w = d·sc[s] · q − dmin·m[s]
 *  | d f16| dmin | scales: 12 B| qs: 128 B of 4-bit quants |
 *  +------+------+-------------+--------------------------+
 *  qs: four 32-byte chunks c; byte 16+32c+l: low nibble = q of element 64c+l (sub-block 2c),
 *      high nibble = q of element 64c+32+l (sub-block 2c+1).
 *  scales (6-bit sc[s], m[s]; ggml's get_scale_min_k4), with S = byte 4+j:
 *      s &lt; 4:  sc = S[s] &amp; 63                          m = S[s+4] &amp; 63
 *      s ≥ 4:  sc = (S[s+4] &amp; 15) | (S[s−4] &gt;&gt; 6) &lt;&lt; 4   m = (S[s+4] &gt;&gt; 4) | (S[s] &gt;&gt; 6) &lt;&lt; 4
 * </pre>
 *
 * <h2>Exact dequantization</h2>
 * Every decoded weight is computed exactly in float: d is an f16 (11 significant bits), so
 * d·q (Q8_0, |q| ≤ 128), d·(q−8) (Q4_0), d·sc and dmin·m (Q4_K, 6-bit factors) are exact
 * products; only Q4_K's final {@code (d·sc)·q − dmin·m} rounds, once, and an fma of the same
 * operands gives the same bits. That is why the vector kernels can dequantize in registers and
 * reuse the float accumulation scheme: a quantized matmul is bitwise the F32 matmul of the
 * dequantized matrix (tested).
 *
 * <h2>Quantizing</h2>
 * Q8_0 and Q4_0 follow ggml's reference quantizers (quantize_row_q8_0_ref / q4_0_ref): Q8_0
 * d = max|x| / 127, q = round-half-away(x / d); Q4_0 d = (the signed value of largest
 * magnitude) / −8, q = min(15, trunc(x / d + 8.5)). Q4_K needs a search; this one fits each
 * sub-block's (scale, min) by weighted least squares over a small grid of step sizes (the idea
 * of ggml's make_qkx2_quants: weights |x| + rms emphasise large values), then quantizes the
 * eight scales and mins to 6 bits against the super-block's f16 d and dmin, and re-rounds the
 * quants against the decoded scales. Any encoder's output decodes the same way; this one is
 * ours, so Q4_K files are valid GGUF blocks but not byte-identical to llama.cpp's.
 */
public final class Quantizer {
    private Quantizer() {}

    static final ValueLayout.OfShort I16 = Tensor.I16_LE;

    /** Q8_0 / Q4_0: offset of the f16 scale d, and of the quants. */
    public static final int Q_D = 0;
    public static final int Q_QS = 2;
    /** Q4_K: offsets of d, dmin, the 12 bytes of 6-bit scales/mins, and the 128 bytes of quants. */
    public static final int K_D = 0;
    public static final int K_DMIN = 2;
    public static final int K_SCALES = 4;
    public static final int K_QS = 16;
    /** MXFP4: offset of the E8M0 scale byte, and of the 16 bytes of 4-bit quants. */
    public static final int M_E = 0;
    public static final int M_QS = 1;
    /** The E2M1 values of the 16 FP4 codes (sign bit 3). */
    static final float[] FP4 = {0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f};

    /** 2^(e − 127) for an E8M0 scale byte; 0xFF is NaN. */
    static float e8m0(MemorySegment s, long b) {
        int e = s.get(ValueLayout.JAVA_BYTE, b + M_E) & 0xFF;
        return e == 0xFF ? Float.NaN : Math.scalb(1f, e - 127);
    }

    // ---------------------------------------------------------------------------------------
    // dequantize
    // ---------------------------------------------------------------------------------------

    /** Element {@code elem} (flat index) of a quantized segment, decoded. */
    public static float dequantize(MemorySegment s, DType dt, long elem) {
        long block = elem / dt.blockSize();
        int i = (int) (elem % dt.blockSize());
        long b = block * dt.blockBytes();
        return switch (dt) {
            case Q8_0 -> s.get(ValueLayout.JAVA_BYTE, b + Q_QS + i) * d(s, b);
            case Q4_0 -> {
                int byt = s.get(ValueLayout.JAVA_BYTE, b + Q_QS + (i & 15));
                int q = i < 16 ? byt & 15 : (byt >> 4) & 15;
                yield (q - 8) * d(s, b);
            }
            case Q4_K -> {
                int sub = i >> 5;
                int byt = s.get(ValueLayout.JAVA_BYTE, b + K_QS + (sub >> 1) * 32L + (i & 31));
                int q = (sub & 1) == 0 ? byt & 15 : (byt >> 4) & 15;
                float d1 = d(s, b + K_D) * scaleK(s, b, sub);
                float m1 = d(s, b + K_DMIN) * minK(s, b, sub);
                yield d1 * q - m1;
            }
            case MXFP4 -> {
                int byt = s.get(ValueLayout.JAVA_BYTE, b + M_QS + (i & 15));
                yield FP4[i < 16 ? byt & 15 : (byt >> 4) & 15] * e8m0(s, b);
            }
            default -> throw new IllegalArgumentException(dt + " is not quantized");
        };
    }

    /** Decodes {@code n} elements (whole blocks) starting at block byte {@code off} into y[yOff...]. */
    public static void dequantizeRow(MemorySegment s, long off, DType dt, float[] y, int yOff, int n) {
        requireWholeBlocks(dt, n);
        int bs = dt.blockSize();
        for (int blk = 0; blk < n / bs; blk++) {
            long b = off + (long) blk * dt.blockBytes();
            int o = yOff + blk * bs;
            switch (dt) {
                case Q8_0 -> {
                    float d = d(s, b);
                    for (int i = 0; i < 32; i++) {
                        y[o + i] = s.get(ValueLayout.JAVA_BYTE, b + Q_QS + i) * d;
                    }
                }
                case Q4_0 -> {
                    float d = d(s, b);
                    for (int j = 0; j < 16; j++) {
                        int byt = s.get(ValueLayout.JAVA_BYTE, b + Q_QS + j);
                        y[o + j] = ((byt & 15) - 8) * d;
                        y[o + j + 16] = (((byt >> 4) & 15) - 8) * d;
                    }
                }
                case Q4_K -> {
                    float d = d(s, b + K_D);
                    float dmin = d(s, b + K_DMIN);
                    for (int sub = 0; sub < 8; sub++) {
                        float d1 = d * scaleK(s, b, sub);
                        float m1 = dmin * minK(s, b, sub);
                        int shift = (sub & 1) * 4;
                        long qs = b + K_QS + (sub >> 1) * 32L;
                        for (int l = 0; l < 32; l++) {
                            int q = (s.get(ValueLayout.JAVA_BYTE, qs + l) >> shift) & 15;
                            y[o + sub * 32 + l] = d1 * q - m1;
                        }
                    }
                }
                case MXFP4 -> {
                    float e = e8m0(s, b);
                    for (int j = 0; j < 16; j++) {
                        int byt = s.get(ValueLayout.JAVA_BYTE, b + M_QS + j);
                        y[o + j] = FP4[byt & 15] * e;
                        y[o + j + 16] = FP4[(byt >> 4) & 15] * e;
                    }
                }
                default -> throw new IllegalArgumentException(dt + " is not quantized");
            }
        }
    }

    /** The f16 at byte b, widened exactly (as the vector kernels do; scales are finite, so NaN payloads do not arise). */
    static float d(MemorySegment s, long b) {
        return Float.float16ToFloat(s.get(I16, b));
    }

    /** 6-bit scale of sub-block {@code sub} of the Q4_K super-block at byte b. */
    static int scaleK(MemorySegment s, long b, int sub) {
        long sc = b + K_SCALES;
        if (sub < 4) {
            return s.get(ValueLayout.JAVA_BYTE, sc + sub) & 63;
        }
        return (s.get(ValueLayout.JAVA_BYTE, sc + sub + 4) & 15) | ((s.get(ValueLayout.JAVA_BYTE, sc + sub - 4) & 0xC0) >> 2);
    }

    /** 6-bit min of sub-block {@code sub} of the Q4_K super-block at byte b. */
    static int minK(MemorySegment s, long b, int sub) {
        long sc = b + K_SCALES;
        if (sub < 4) {
            return s.get(ValueLayout.JAVA_BYTE, sc + sub + 4) & 63;
        }
        return ((s.get(ValueLayout.JAVA_BYTE, sc + sub + 4) & 0xF0) >> 4) | ((s.get(ValueLayout.JAVA_BYTE, sc + sub) & 0xC0) >> 2);
    }

    // ---------------------------------------------------------------------------------------
    // quantize
    // ---------------------------------------------------------------------------------------

    /** Refuses a shape whose rows (last dimension) are not whole blocks of {@code dt}, naming the tensor. */
    public static void requireWholeBlockRows(String name, long[] shape, DType dt) {
        long cols = shape.length == 0 ? 1 : shape[shape.length - 1];
        if (cols % dt.blockSize() != 0) {
            throw new IllegalArgumentException("tensor '" + name + "' " + Arrays.toString(shape) + " cannot be stored as "
                    + dt + ": " + dt + " needs rows of whole " + dt.blockSize() + "-weight blocks, and " + cols
                    + " is not a multiple of " + dt.blockSize());
        }
    }

    /** A quantized copy of {@code src} (any plain dtype, rows of whole blocks) in {@code arena}. */
    public static Tensor quantize(Tensor src, DType dt, Arena arena) {
        requireWholeBlockRows(src.name(), src.shape(), dt);
        MemorySegment out = arena.allocate(dt.bytesFor(src.size()), 64);
        quantize(src, dt, out);
        return new Tensor(src.name(), out, dt, src.shape());
    }

    /** Quantizes {@code src} row by row into {@code dst} ({@code dt.bytesFor(src.size())} bytes). */
    public static void quantize(Tensor src, DType dt, MemorySegment dst) {
        requireWholeBlockRows(src.name(), src.shape(), dt);
        if (src.dtype().quantized()) {
            throw new IllegalArgumentException("tensor '" + src.name() + "' is already " + src.dtype());
        }
        long n = src.size();
        if (dst.byteSize() != dt.bytesFor(n)) {
            throw new IllegalArgumentException("tensor '" + src.name() + "': " + dst.byteSize() + " bytes for " + n
                    + " weights of " + dt + " (needs " + dt.bytesFor(n) + ")");
        }
        long[] shape = src.shape();
        int cols = shape.length == 0 ? 1 : Math.toIntExact(shape[shape.length - 1]);
        long rows = cols == 0 ? 0 : n / cols;
        float[] row = new float[cols];
        long rowBytes = dt.bytesFor(cols);
        Scratch sc = new Scratch();
        for (long r = 0; r < rows; r++) {
            VectorKernels.widen(src.data(), src.dtype(), r * cols, row, 0, cols);
            quantizeRow(row, 0, cols, dt, dst, r * rowBytes, sc);
        }
    }

    /** Quantizes {@code n} floats (whole blocks) of x into blocks at byte {@code off} of dst. */
    public static void quantizeRow(float[] x, int xOff, int n, DType dt, MemorySegment dst, long off) {
        quantizeRow(x, xOff, n, dt, dst, off, new Scratch());
    }

    private static void quantizeRow(float[] x, int xOff, int n, DType dt, MemorySegment dst, long off, Scratch sc) {
        requireWholeBlocks(dt, n);
        int bs = dt.blockSize();
        for (int blk = 0; blk < n / bs; blk++) {
            long b = off + (long) blk * dt.blockBytes();
            int o = xOff + blk * bs;
            switch (dt) {
                case Q8_0 -> blockQ8_0(x, o, dst, b);
                case Q4_0 -> blockQ4_0(x, o, dst, b);
                case Q4_K -> blockQ4_K(x, o, dst, b, sc);
                case MXFP4 -> throw new IllegalArgumentException("MXFP4 is computed on as a checkpoint stores it; epserve does not quantize to it");
                default -> throw new IllegalArgumentException(dt + " is not quantized");
            }
        }
    }

    private static void requireWholeBlocks(DType dt, int n) {
        if (!dt.quantized()) {
            throw new IllegalArgumentException(dt + " is not quantized");
        }
        if (n % dt.blockSize() != 0) {
            throw new IllegalArgumentException(dt + ": " + n + " elements are not whole blocks of " + dt.blockSize());
        }
    }

    /** d = max|x| / 127 (stored f16), q = round-half-away-from-zero(x · (1/d)), as ggml's reference. */
    private static void blockQ8_0(float[] x, int o, MemorySegment dst, long b) {
        float amax = 0f;
        for (int i = 0; i < 32; i++) {
            amax = Math.max(amax, Math.abs(x[o + i]));
        }
        float d = amax / 127f;
        float id = d != 0f ? 1f / d : 0f;
        dst.set(I16, b + Q_D, Numerics.floatToF16(d));
        for (int i = 0; i < 32; i++) {
            dst.set(ValueLayout.JAVA_BYTE, b + Q_QS + i, (byte) roundHalfAway(x[o + i] * id));
        }
    }

    /**
     * d = m / −8 where m is the element of largest magnitude (sign kept, first one on ties), so
     * that m itself maps to q = 0 exactly; q = min(15, trunc(x/d + 8.5)), as ggml's reference.
     */
    private static void blockQ4_0(float[] x, int o, MemorySegment dst, long b) {
        float amax = 0f;
        float max = 0f;
        for (int i = 0; i < 32; i++) {
            float v = x[o + i];
            if (Math.abs(v) > amax) {
                amax = Math.abs(v);
                max = v;
            }
        }
        float d = max / -8f;
        float id = d != 0f ? 1f / d : 0f;
        dst.set(I16, b + Q_D, Numerics.floatToF16(d));
        for (int j = 0; j < 16; j++) {
            int lo = Math.min(15, (int) (x[o + j] * id + 8.5f));
            int hi = Math.min(15, (int) (x[o + j + 16] * id + 8.5f));
            dst.set(ValueLayout.JAVA_BYTE, b + Q_QS + j, (byte) (lo | hi << 4));
        }
    }

    /** Per-thread work arrays of the Q4_K search. */
    private static final class Scratch {
        final float[] weight = new float[32];
        final int[] q = new int[256];
        final int[] trial = new int[32];
        final float[] scale = new float[8];
        final float[] min = new float[8];
        final float[] fit = new float[2];
    }

    private static void blockQ4_K(float[] x, int o, MemorySegment dst, long b, Scratch sc) {
        float maxScale = 0f;
        float maxMin = 0f;
        for (int s = 0; s < 8; s++) {
            int so = o + 32 * s;
            float ss = 0f;
            for (int l = 0; l < 32; l++) {
                ss += x[so + l] * x[so + l];
            }
            float rms = (float) Math.sqrt(ss / 32f);
            for (int l = 0; l < 32; l++) {
                sc.weight[l] = rms + Math.abs(x[so + l]);
            }
            fitScaleMin(x, so, sc);
            sc.scale[s] = sc.fit[0];
            sc.min[s] = sc.fit[1];
            maxScale = Math.max(maxScale, sc.fit[0]);
            maxMin = Math.max(maxMin, sc.fit[1]);
        }
        short dh = Numerics.floatToF16(maxScale / 63f);
        short mh = Numerics.floatToF16(maxMin / 63f);
        float d = Float.float16ToFloat(dh);
        float dmin = Float.float16ToFloat(mh);
        dst.set(I16, b + K_D, dh);
        dst.set(I16, b + K_DMIN, mh);
        byte[] packed = new byte[12];
        for (int s = 0; s < 8; s++) {
            int ls = d > 0f ? Math.clamp(Math.round(sc.scale[s] / d), 0, 63) : 0;
            int lm = dmin > 0f ? Math.clamp(Math.round(sc.min[s] / dmin), 0, 63) : 0;
            if (s < 4) {
                packed[s] |= (byte) ls;
                packed[s + 4] |= (byte) lm;
            } else {
                packed[s + 4] = (byte) ((ls & 15) | (lm & 15) << 4);
                packed[s - 4] |= (byte) ((ls >> 4) << 6);
                packed[s] |= (byte) ((lm >> 4) << 6);
            }
            // Re-round the quants against the scale and min as they will be decoded.
            float d1 = d * ls;
            float m1 = dmin * lm;
            for (int l = 0; l < 32; l++) {
                sc.q[32 * s + l] = d1 > 0f ? Math.clamp(Math.round((x[o + 32 * s + l] + m1) / d1), 0, 15) : 0;
            }
        }
        MemorySegment.copy(packed, 0, dst, ValueLayout.JAVA_BYTE, b + K_SCALES, 12);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = sc.q[64 * c + l];
                int hi = sc.q[64 * c + 32 + l];
                dst.set(ValueLayout.JAVA_BYTE, b + K_QS + 32L * c + l, (byte) (lo | hi << 4));
            }
        }
    }

    /**
     * Fits x[o..o+32) ≈ a·q − m with integer q in [0, 15], a ≥ 0, m ≥ 0, minimising Σ w (a q − m − x)²
     * over the step sizes (hi − lo) / (15 + t/10), t = −10..10 (lo = min(x, 0), hi = max x): for
     * each, round to get q, then solve the 2×2 weighted least-squares system for (a, −m); an
     * offset that comes out positive is pinned to 0 (the format stores the min as a subtrahend).
     * Result: fit[0] = a, fit[1] = m.
     */
    private static void fitScaleMin(float[] x, int o, Scratch sc) {
        float lo = 0f;
        float hi = x[o];
        for (int l = 0; l < 32; l++) {
            lo = Math.min(lo, x[o + l]);
            hi = Math.max(hi, x[o + l]);
        }
        if (hi <= lo) {
            sc.fit[0] = 0f;
            sc.fit[1] = -lo;
            return;
        }
        float[] w = sc.weight;
        float bestA = (hi - lo) / 15f;
        float bestC = lo;
        double bestErr = error(x, o, w, bestA, bestC, 1f / bestA, lo);
        for (int t = -10; t <= 10; t++) {
            float inv = (15f + 0.1f * t) / (hi - lo);
            double sw = 0;
            double sq = 0;
            double sqq = 0;
            double sx = 0;
            double sqx = 0;
            for (int l = 0; l < 32; l++) {
                int q = Math.clamp(Math.round((x[o + l] - lo) * inv), 0, 15);
                sc.trial[l] = q;
                double wl = w[l];
                sw += wl;
                sq += wl * q;
                sqq += wl * q * q;
                sx += wl * x[o + l];
                sqx += wl * q * x[o + l];
            }
            double det = sw * sqq - sq * sq;
            if (det <= 0) {
                continue;
            }
            double a = (sw * sqx - sq * sx) / det;
            double c = (sqq * sx - sq * sqx) / det;
            if (c > 0) {
                c = 0;
                a = sqx / sqq;
            }
            if (a <= 0) {
                continue;
            }
            double err = 0;
            for (int l = 0; l < 32; l++) {
                double e = a * sc.trial[l] + c - x[o + l];
                err += w[l] * e * e;
            }
            if (err < bestErr) {
                bestErr = err;
                bestA = (float) a;
                bestC = (float) c;
            }
        }
        sc.fit[0] = bestA;
        sc.fit[1] = -bestC;
    }

    private static double error(float[] x, int o, float[] w, float a, float c, float inv, float lo) {
        double err = 0;
        for (int l = 0; l < 32; l++) {
            int q = Math.clamp(Math.round((x[o + l] - lo) * inv), 0, 15);
            double e = (double) a * q + c - x[o + l];
            err += w[l] * e * e;
        }
        return err;
    }

    /** C's roundf: halves away from zero (Math.round rounds them up). */
    static int roundHalfAway(float v) {
        float a = Math.abs(v);
        float f = (float) Math.floor(a);
        if (a - f >= 0.5f) {
            f += 1f;
        }
        return (int) Math.copySign(f, v);
    }

    // ---------------------------------------------------------------------------------------
    // validation
    // ---------------------------------------------------------------------------------------

    /**
     * Index of the first element of the first block whose f16 scale (or Q4_K min scale) is not
     * finite, or −1. With finite scales every decoded weight is finite.
     */
    public static long firstNonFinite(Tensor t) {
        DType dt = t.dtype();
        MemorySegment s = t.data();
        long blocks = s.byteSize() / dt.blockBytes();
        for (long blk = 0; blk < blocks; blk++) {
            long b = blk * dt.blockBytes();
            boolean ok = dt == DType.MXFP4 ? !Float.isNaN(e8m0(s, b))
                    : Float.isFinite(d(s, b)) && (dt != DType.Q4_K || Float.isFinite(d(s, b + K_DMIN)));
            if (!ok) {
                return blk * dt.blockSize();
            }
        }
        return -1;
    }
}
