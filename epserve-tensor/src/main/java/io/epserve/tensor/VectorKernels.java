package io.epserve.tensor;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Objects;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The fast twin of {@link ScalarKernels}: the one place the Vector API appears (DESIGN.md §3.1).
 * Weights are read where they lie (a {@link MemorySegment}, usually a mapped file, little-endian,
 * any alignment) and widened to float in registers; activations are heap {@code float[]}.
 *
 * <h2>One accumulation scheme for every dot product (batch invariance)</h2>
 * Every {@code y[i, n] = w[n, :] · x[i, :]} of {@link #matmul} is computed as
 * <pre>
 *   acc  = 0 (one vector of L lanes, L = the preferred species length: 8 on AVX2, 16 on AVX-512)
 *   for c in 0, L, 2L, ... while c + L &lt;= K:  acc = fma(w[n, c:c+L], x[i, c:c+L], acc)   (lane-wise)
 *   s    = hsum(acc)                      fixed pairwise tree over lanes, see {@link #hsum}
 *   for k in K - K % L ... K-1:          s = fma(w[n, k], x[i, k], s)                    (scalar)
 * </pre>
 * whatever m is, whichever register tile (4 rows × 2 tokens, 4 × 1, 1 × 1), K block or thread
 * computes it, and wherever x and y start. Only IEEE-exact operations are used (fma, add, exact dtype
 * widening), never {@code reduceLanes(ADD)}, whose order the JIT may change; so the result is
 * bitwise the same in the interpreter and in compiled code, and a token's output never depends
 * on its batch. The lane count is fixed per JVM (it is the CPU's preferred vector size), so
 * results may differ between machines with different vector widths, never within one.
 *
 * <p>Block-quantized weights (Q8_0, Q4_0, Q4_K, see {@link Quantizer}) enter the same scheme:
 * each weight is decoded exactly to float in registers, so the result is bitwise the F32 matmul
 * of the dequantized matrix (see the "quantized weights" section below).
 *
 * <h2>Shapes of the matmul</h2>
 * m = 1 (decode, memory-bound): four weight rows at a time (two for F16), converted in
 * registers, one x load shared by four FMAs. m &gt; 1 (prefill, compute-bound): cache-blocked
 * (see {@link #batched}); a block of 16 rows × one K block is widened into a small per-thread
 * float tile (never the whole matrix), then every pair of tokens runs a 4 × 2 register tile:
 * per K chunk 4 weight loads + 2 x loads feed 8 independent FMA chains, so each weight vector
 * serves two tokens and each x vector four rows.
 */
public final class VectorKernels {
    private VectorKernels() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /** Shorts for L lanes: half the bit size of F (BF16/F16 loads). */
    static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    /**
     * Bytes for L lanes: a quarter of the bit size of F (quantized loads). Null where that is under
     * 64 bits (4 float lanes): there the quantized kernels dequantize through a heap row instead.
     */
    static final VectorSpecies<Byte> B = F.vectorBitSize() / 4 >= 64
            ? VectorSpecies.of(byte.class, VectorShape.forBitSize(F.vectorBitSize() / 4)) : null;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final java.lang.foreign.ValueLayout.OfLong I64_LE = java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED.withOrder(LE);
    static final java.lang.foreign.ValueLayout.OfInt I32_LE = java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);

    /** Below this many multiply-adds a matmul runs on the caller alone: hand-off would cost more. */
    static final long SERIAL_MACS = 1L << 15;
    /** Smallest chunk of a parallel matmul, in multiply-adds. */
    static final long MIN_CHUNK_MACS = 1L << 14;
    /** Rows per register tile. Batched chunk boundaries are multiples of RB (see batched). */
    static final int ROWS = 4;
    /** Tokens per register tile. */
    static final int TOKENS = 2;

    /** Preferred vector lanes of float on this JVM. */
    public static int lanes() {
        return L;
    }

    // ---------------------------------------------------------------------------------------
    // dtype widening
    // ---------------------------------------------------------------------------------------

    static FloatVector loadF32(MemorySegment s, long byteOff) {
        return FloatVector.fromMemorySegment(F, s, byteOff, LE);
    }

    /** BF16 is the top half of a float: widen short to int, shift left 16. */
    static FloatVector loadBF16(MemorySegment s, long byteOff) {
        IntVector h = (IntVector) ShortVector.fromMemorySegment(S, s, byteOff, LE).convertShape(VectorOperators.S2I, I, 0);
        return h.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /**
     * F16 to float without a table: move exponent+mantissa into float position (bits << 13),
     * which reads as 2^-112 times the value, and multiply by 2^112 (exact, also for subnormal
     * halves); infinities and NaNs (exponent 31) get the float exponent 255 instead. Bitwise
     * equal to {@link #f16ToFloat} and to the Java definition of {@link Float#float16ToFloat} for
     * all 65,536 inputs (tested); a signalling NaN keeps its payload unquieted, like that Java
     * code and unlike the CPU instruction the JIT substitutes for it.
     */
    static FloatVector loadF16(MemorySegment s, long byteOff) {
        // h is sign-extended: bit 31 is the sign, bits 13..27 of h << 13 are exponent+mantissa.
        IntVector h = (IntVector) ShortVector.fromMemorySegment(S, s, byteOff, LE).convertShape(VectorOperators.S2I, I, 0);
        IntVector shifted = h.lanewise(VectorOperators.LSHL, 13).and(0x0FFFE000);
        IntVector bits = shifted.reinterpretAsFloats().mul(0x1p112f).reinterpretAsInts();
        VectorMask<Integer> special = shifted.compare(VectorOperators.GT, 0x0F7FFFFF);
        bits = bits.blend(shifted.or(0x7F800000), special);
        return bits.or(h.and(0x80000000)).reinterpretAsFloats();
    }

    /** One element widened to float, as the vector loads do. */
    static float at(MemorySegment s, DType dt, long elem) {
        return switch (dt) {
            case F32 -> s.get(Tensor.F32_LE, elem * 4);
            case BF16 -> Numerics.bf16ToFloat(s.get(Tensor.I16_LE, elem * 2));
            case F16 -> f16ToFloat(s.get(Tensor.I16_LE, elem * 2));
            case Q8_0, Q4_0, Q4_K -> Quantizer.dequantize(s, dt, elem);
        };
    }

    /** The scalar form of {@link #loadF16}; same bits in every JIT tier (see there). */
    static float f16ToFloat(short b) {
        int h = b;
        int shifted = (h << 13) & 0x0FFFE000;
        int bits = Float.floatToRawIntBits(Float.intBitsToFloat(shifted) * 0x1p112f);
        if (shifted > 0x0F7FFFFF) {
            bits = shifted | 0x7F800000;
        }
        return Float.intBitsToFloat(bits | (h & 0x80000000));
    }

    /** Widens {@code len} elements from element {@code elem} of {@code s} into {@code dst[dOff...]}. */
    static void widen(MemorySegment s, DType dt, long elem, float[] dst, int dOff, int len) {
        if (dt.quantized()) {
            widenQuantized(s, dt, elem, dst, dOff, len);
            return;
        }
        int lv = F.loopBound(len);
        int k = 0;
        switch (dt) {
            case F32 -> {
                for (; k < lv; k += L) {
                    loadF32(s, (elem + k) * 4).intoArray(dst, dOff + k);
                }
            }
            case BF16 -> {
                for (; k < lv; k += L) {
                    loadBF16(s, (elem + k) * 2).intoArray(dst, dOff + k);
                }
            }
            case F16 -> {
                for (; k < lv; k += L) {
                    loadF16(s, (elem + k) * 2).intoArray(dst, dOff + k);
                }
            }
        }
        for (; k < len; k++) {
            dst[dOff + k] = at(s, dt, elem + k);
        }
    }

    /**
     * The lane sum of every dot product: accumulators are stored to a float[] and summed by a
     * fixed pairwise tree ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))..., in scalar code, so compiled
     * and interpreted code agree bit for bit. (Going through an array also keeps vectors from
     * crossing a call boundary, where C2 would box them when it does not inline.)
     */
    static float hsum(float[] a, int o) {
        if (L == 8) {
            return ((a[o] + a[o + 1]) + (a[o + 2] + a[o + 3])) + ((a[o + 4] + a[o + 5]) + (a[o + 6] + a[o + 7]));
        }
        if (L == 16) {
            return (((a[o] + a[o + 1]) + (a[o + 2] + a[o + 3])) + ((a[o + 4] + a[o + 5]) + (a[o + 6] + a[o + 7])))
                    + (((a[o + 8] + a[o + 9]) + (a[o + 10] + a[o + 11])) + ((a[o + 12] + a[o + 13]) + (a[o + 14] + a[o + 15])));
        }
        if (L == 4) {
            return (a[o] + a[o + 1]) + (a[o + 2] + a[o + 3]);
        }
        return hsumGeneric(a, o, L);
    }

    private static float hsumGeneric(float[] a, int o, int len) {
        if (len == 1) {
            return a[o];
        }
        int h = len / 2;
        return hsumGeneric(a, o, h) + hsumGeneric(a, o + h, h);
    }

    /** Per-thread scratch: widened weight tile and accumulator spill. */
    static final class Scratch {
        float[] tile = new float[0];
        final float[] acc = new float[16 * L];
        /** Q4_K sub-block factors of two rows (see factorsQ4_K). */
        final float[] factors = new float[32];

        float[] scores = new float[0];
        float[] state = new float[0];

        int[] identity = new int[0];

        /** 0, 1, ..., size-1 (at least): the rows of a contiguous KV cache. */
        int[] identity(int size) {
            if (identity.length < size) {
                int[] id = new int[Math.max(size, identity.length * 2)];
                for (int i = 0; i < id.length; i++) {
                    id[i] = i;
                }
                identity = id;
            }
            return identity;
        }

        float[] state(int size) {
            if (state.length < size) {
                state = new float[Math.max(size, state.length * 2)];
            }
            return state;
        }

        float[] tile(int size) {
            if (tile.length < size) {
                tile = new float[Math.max(size, tile.length * 2)];
            }
            return tile;
        }

        float[] scores(int size) {
            if (scores.length < size) {
                scores = new float[Math.max(size, scores.length * 2)];
            }
            return scores;
        }
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    static Scratch scratch() {
        return SCRATCH.get();
    }

    // ---------------------------------------------------------------------------------------
    // matmul
    // ---------------------------------------------------------------------------------------

    /** {@code y[i, n] = sum_k x[i, k] * w[n, k]} on the common kernel pool. */
    public static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        matmul(x, xOff, m, w, y, yOff, KernelPool.common());
    }

    /** As {@link #matmul(float[], int, int, Tensor, float[], int)}, on the given pool. */
    public static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff, KernelPool pool) {
        int n = w.rows();
        int k = w.cols();
        if (m < 0) {
            throw new IllegalArgumentException("m < 0: " + m);
        }
        Objects.checkFromIndexSize(xOff, Math.multiplyExact(m, k), x.length);
        Objects.checkFromIndexSize(yOff, Math.multiplyExact(m, n), y.length);
        if (m == 0 || n == 0) {
            return;
        }
        MemorySegment seg = w.data();
        DType dt = w.dtype();
        long macs = (long) m * n * k;
        int chunk;
        if (macs < SERIAL_MACS || pool.threads() == 1) {
            chunk = n;
        } else {
            // Many small chunks: a thread that loses its CPU to another process (the machines are
            // shared) then delays the call by one small chunk, not by a quarter of the work.
            int target = pool.threads() * 8;
            long rows = Math.max((n + target - 1) / target, (MIN_CHUNK_MACS + (long) m * k - 1) / ((long) m * k));
            chunk = (int) Math.min(n, roundUp(rows, m == 1 ? ROWS : RB));
        }
        if (chunk >= n) {
            rows(x, xOff, m, seg, dt, n, k, y, yOff, 0, n);
            return;
        }
        MatmulJob j = MATMUL_JOB.get();
        j.x = x; j.xOff = xOff; j.m = m; j.seg = seg; j.dt = dt; j.n = n; j.k = k; j.y = y; j.yOff = yOff;
        try {
            pool.parallelFor(n, chunk, j);
        } finally {
            j.x = null; j.y = null; j.seg = null;
        }
    }

    static final class MatmulJob implements KernelPool.Body {
        float[] x; int xOff; int m; MemorySegment seg; DType dt; int n; int k; float[] y; int yOff;
        public void run(int r0, int r1) {
            rows(x, xOff, m, seg, dt, n, k, y, yOff, r0, r1);
        }
    }

    /** Rows {@code [r0, r1)} of y for m tokens, by the kernel for that m and dtype. */
    static void rows(float[] x, int xOff, int m, MemorySegment seg, DType dt, int n, int k, float[] y, int yOff, int r0, int r1) {
        if (m == 1) {
            matvec(x, xOff, seg, dt, k, y, yOff, r0, r1);
        } else if (m <= FEW_TOKENS && dt == DType.BF16) {
            fewTokens(x, xOff, m, seg, n, k, y, yOff, r0, r1);
        } else {
            batched(x, xOff, m, seg, dt, n, k, y, yOff, r0, r1);
        }
    }

    /** Up to this many tokens, BF16 weights are widened in registers and streamed once (see {@link #fewTokens}). */
    static final int FEW_TOKENS = 4;

    /**
     * Rows {@code [r0, r1)} of y for 2 ≤ m ≤ {@link #FEW_TOKENS} tokens and BF16 weights, like
     * {@link #matvec}: each weight vector is widened in registers and used at once for every
     * token, so the weights stream from memory once and nothing is staged (the staging of
     * {@link #batched} costs more than it saves when only two to four tokens share a weight).
     * Register tiles: 4 rows × 2 tokens, 3 × 3, 2 × 4. Each accumulator sees the same fma
     * sequence as matvec's, so the results are bitwise those of {@link #matvec} per token.
     */
    static void fewTokens(float[] x, int xOff, int m, MemorySegment seg, int n, int k, float[] y, int yOff, int r0, int r1) {
        int kv = F.loopBound(k);
        long rowBytes = 2L * k;
        int rowsPerTile = switch (m) {
            case 2 -> 4;
            case 3 -> 3;
            default -> 2;
        };
        float[] acc = scratch().acc;
        int r = r0;
        for (; r + rowsPerTile <= r1; r += rowsPerTile) {
            long b0 = r * rowBytes;
            switch (m) {
                case 2 -> acc4x2BF16(x, xOff, k, seg, b0, rowBytes, kv, acc);
                case 3 -> acc3x3BF16(x, xOff, k, seg, b0, rowBytes, kv, acc);
                default -> acc2x4BF16(x, xOff, k, seg, b0, rowBytes, kv, acc);
            }
            for (int j = 0; j < rowsPerTile; j++) {
                long e = (long) (r + j) * k;
                for (int i = 0; i < m; i++) {
                    y[yOff + i * n + r + j] = tail(hsum(acc, (j * m + i) * L), x, xOff + i * k, seg, DType.BF16, e, kv, k);
                }
            }
        }
        if (r < r1) {
            batched(x, xOff, m, seg, DType.BF16, n, k, y, yOff, r, r1);
        }
    }

    /** 4 rows × 2 tokens from BF16; accumulator (row j, token i) at acc[(j·2 + i)·L]. */
    private static void acc4x2BF16(float[] x, int xOff, int k, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        long b2 = b1 + rb;
        long b3 = b2 + rb;
        int x1 = xOff + k;
        FloatVector a00 = FloatVector.zero(F);
        FloatVector a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (int c = 0; c < kv; c += L) {
            FloatVector p = FloatVector.fromArray(F, x, xOff + c);
            FloatVector q = FloatVector.fromArray(F, x, x1 + c);
            long o = (long) c * 2;
            FloatVector v = loadBF16(seg, b0 + o);
            a00 = v.fma(p, a00);
            a01 = v.fma(q, a01);
            v = loadBF16(seg, b1 + o);
            a10 = v.fma(p, a10);
            a11 = v.fma(q, a11);
            v = loadBF16(seg, b2 + o);
            a20 = v.fma(p, a20);
            a21 = v.fma(q, a21);
            v = loadBF16(seg, b3 + o);
            a30 = v.fma(p, a30);
            a31 = v.fma(q, a31);
        }
        a00.intoArray(acc, 0);
        a01.intoArray(acc, L);
        a10.intoArray(acc, 2 * L);
        a11.intoArray(acc, 3 * L);
        a20.intoArray(acc, 4 * L);
        a21.intoArray(acc, 5 * L);
        a30.intoArray(acc, 6 * L);
        a31.intoArray(acc, 7 * L);
    }

    /** 3 rows × 3 tokens from BF16; accumulator (row j, token i) at acc[(j·3 + i)·L]. */
    private static void acc3x3BF16(float[] x, int xOff, int k, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        long b2 = b1 + rb;
        int x1 = xOff + k;
        int x2 = x1 + k;
        FloatVector a00 = FloatVector.zero(F);
        FloatVector a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00, a20 = a00, a21 = a00, a22 = a00;
        for (int c = 0; c < kv; c += L) {
            FloatVector p = FloatVector.fromArray(F, x, xOff + c);
            FloatVector q = FloatVector.fromArray(F, x, x1 + c);
            FloatVector t = FloatVector.fromArray(F, x, x2 + c);
            long o = (long) c * 2;
            FloatVector v = loadBF16(seg, b0 + o);
            a00 = v.fma(p, a00);
            a01 = v.fma(q, a01);
            a02 = v.fma(t, a02);
            v = loadBF16(seg, b1 + o);
            a10 = v.fma(p, a10);
            a11 = v.fma(q, a11);
            a12 = v.fma(t, a12);
            v = loadBF16(seg, b2 + o);
            a20 = v.fma(p, a20);
            a21 = v.fma(q, a21);
            a22 = v.fma(t, a22);
        }
        a00.intoArray(acc, 0);
        a01.intoArray(acc, L);
        a02.intoArray(acc, 2 * L);
        a10.intoArray(acc, 3 * L);
        a11.intoArray(acc, 4 * L);
        a12.intoArray(acc, 5 * L);
        a20.intoArray(acc, 6 * L);
        a21.intoArray(acc, 7 * L);
        a22.intoArray(acc, 8 * L);
    }

    /** 2 rows × 4 tokens from BF16; accumulator (row j, token i) at acc[(j·4 + i)·L]. */
    private static void acc2x4BF16(float[] x, int xOff, int k, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        int x1 = xOff + k;
        int x2 = x1 + k;
        int x3 = x2 + k;
        FloatVector a00 = FloatVector.zero(F);
        FloatVector a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        for (int c = 0; c < kv; c += L) {
            long o = (long) c * 2;
            FloatVector v = loadBF16(seg, b0 + o);
            FloatVector u = loadBF16(seg, b1 + o);
            FloatVector p = FloatVector.fromArray(F, x, xOff + c);
            a00 = v.fma(p, a00);
            a10 = u.fma(p, a10);
            p = FloatVector.fromArray(F, x, x1 + c);
            a01 = v.fma(p, a01);
            a11 = u.fma(p, a11);
            p = FloatVector.fromArray(F, x, x2 + c);
            a02 = v.fma(p, a02);
            a12 = u.fma(p, a12);
            p = FloatVector.fromArray(F, x, x3 + c);
            a03 = v.fma(p, a03);
            a13 = u.fma(p, a13);
        }
        a00.intoArray(acc, 0);
        a01.intoArray(acc, L);
        a02.intoArray(acc, 2 * L);
        a03.intoArray(acc, 3 * L);
        a10.intoArray(acc, 4 * L);
        a11.intoArray(acc, 5 * L);
        a12.intoArray(acc, 6 * L);
        a13.intoArray(acc, 7 * L);
    }
    private static final ThreadLocal<MatmulJob> MATMUL_JOB = ThreadLocal.withInitial(MatmulJob::new);

    static final class AttnJob implements KernelPool.Body {
        float[] q; int qOff; float[] keys; int kOff; float[] values; int vOff; int[] rows; int kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV; float scale; float[] out; int outOff;
        public void run(int h0, int h1) {
            Scratch sc = scratch();
            float[] sco = sc.scores(nKeys);
            int[] rs = rows != null ? rows : sc.identity(nKeys);
            for (int h = h0; h < h1; h++) {
                attentionHead(q, qOff, keys, kOff, values, vOff, rs, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                        headDimK, headDimV, scale, out, outOff, sco, sc.acc, h);
            }
        }
    }
    private static final ThreadLocal<AttnJob> ATTN_JOB = ThreadLocal.withInitial(AttnJob::new);

    private static long roundUp(long v, int q) {
        return (v + q - 1) / q * q;
    }

    /** The scalar tail of one dot product, after the lane sum. */
    private static float tail(float s, float[] x, int xOff, MemorySegment seg, DType dt, long rowElem, int kv, int k) {
        for (int c = kv; c < k; c++) {
            s = Math.fma(at(seg, dt, rowElem + c), x[xOff + c], s);
        }
        return s;
    }

    /** Rows {@code [r0, r1)} of {@code y = w x}, one token; weights widened in registers. */
    static void matvec(float[] x, int xOff, MemorySegment seg, DType dt, int k, float[] y, int yOff, int r0, int r1) {
        if (dt.quantized()) {
            matvecQuantized(x, xOff, seg, dt, k, y, yOff, r0, r1);
            return;
        }
        int kv = F.loopBound(k);
        long rowBytes = dt.bytesFor(k);
        float[] acc = scratch().acc;
        int r = r0;
        if (dt == DType.BF16) {
            for (; r + 8 <= r1; r += 8) {
                acc8BF16(x, xOff, seg, r * rowBytes, rowBytes, kv, acc);
                long e = (long) r * k;
                for (int j = 0; j < 8; j++) {
                    y[yOff + r + j] = tail(hsum(acc, j * L), x, xOff, seg, dt, e + (long) j * k, kv, k);
                }
            }
        }
        for (; r + 4 <= r1; r += 4) {
            long b0 = r * rowBytes;
            switch (dt) {
                case F32 -> acc4F32(x, xOff, seg, b0, rowBytes, kv, acc);
                case BF16 -> acc4BF16(x, xOff, seg, b0, rowBytes, kv, acc);
                case F16 -> acc4F16(x, xOff, seg, b0, rowBytes, kv, acc);
            }
            long e = (long) r * k;
            for (int j = 0; j < 4; j++) {
                y[yOff + r + j] = tail(hsum(acc, j * L), x, xOff, seg, dt, e + (long) j * k, kv, k);
            }
        }
        for (; r < r1; r++) {
            long b0 = r * rowBytes;
            switch (dt) {
                case F32 -> acc1F32(x, xOff, seg, b0, kv, acc);
                case BF16 -> acc1BF16(x, xOff, seg, b0, kv, acc);
                case F16 -> acc1F16(x, xOff, seg, b0, kv, acc);
            }
            y[yOff + r] = tail(hsum(acc, 0), x, xOff, seg, dt, (long) r * k, kv, k);
        }
    }

    // One small method per loop, so that C2 inlines every vector operation in it (vectors
    // crossing a call that is not inlined get boxed); results leave through acc[].

    /** BF16 decode takes 8 rows per pass: more independent FMA chains and DRAM streams per x load. */
    private static void acc8BF16(float[] x, int xOff, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        long b2 = b1 + rb;
        long b3 = b2 + rb;
        long b4 = b3 + rb;
        long b5 = b4 + rb;
        long b6 = b5 + rb;
        long b7 = b6 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int c = 0; c < kv; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xOff + c);
            long o = (long) c * 2;
            a0 = loadBF16(seg, b0 + o).fma(xv, a0);
            a1 = loadBF16(seg, b1 + o).fma(xv, a1);
            a2 = loadBF16(seg, b2 + o).fma(xv, a2);
            a3 = loadBF16(seg, b3 + o).fma(xv, a3);
            a4 = loadBF16(seg, b4 + o).fma(xv, a4);
            a5 = loadBF16(seg, b5 + o).fma(xv, a5);
            a6 = loadBF16(seg, b6 + o).fma(xv, a6);
            a7 = loadBF16(seg, b7 + o).fma(xv, a7);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
        a2.intoArray(acc, 2 * L);
        a3.intoArray(acc, 3 * L);
        a4.intoArray(acc, 4 * L);
        a5.intoArray(acc, 5 * L);
        a6.intoArray(acc, 6 * L);
        a7.intoArray(acc, 7 * L);
    }

    private static void acc4F32(float[] x, int xOff, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        long b2 = b1 + rb;
        long b3 = b2 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int c = 0; c < kv; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xOff + c);
            long o = (long) c * 4;
            a0 = loadF32(seg, b0 + o).fma(xv, a0);
            a1 = loadF32(seg, b1 + o).fma(xv, a1);
            a2 = loadF32(seg, b2 + o).fma(xv, a2);
            a3 = loadF32(seg, b3 + o).fma(xv, a3);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
        a2.intoArray(acc, 2 * L);
        a3.intoArray(acc, 3 * L);
    }

    private static void acc4BF16(float[] x, int xOff, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        long b1 = b0 + rb;
        long b2 = b1 + rb;
        long b3 = b2 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int c = 0; c < kv; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xOff + c);
            long o = (long) c * 2;
            a0 = loadBF16(seg, b0 + o).fma(xv, a0);
            a1 = loadBF16(seg, b1 + o).fma(xv, a1);
            a2 = loadBF16(seg, b2 + o).fma(xv, a2);
            a3 = loadBF16(seg, b3 + o).fma(xv, a3);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
        a2.intoArray(acc, 2 * L);
        a3.intoArray(acc, 3 * L);
    }

    /**
     * F16 takes two rows per call, not four: four inlined {@link #loadF16} exceed C2's node budget
     * for one compilation and the fourth would not be inlined (its vector would be boxed).
     */
    private static void acc4F16(float[] x, int xOff, MemorySegment seg, long b0, long rb, int kv, float[] acc) {
        acc2F16(x, xOff, seg, b0, rb, kv, acc, 0);
        acc2F16(x, xOff, seg, b0 + 2 * rb, rb, kv, acc, 2 * L);
    }

    private static void acc2F16(float[] x, int xOff, MemorySegment seg, long b0, long rb, int kv, float[] acc, int ao) {
        long b1 = b0 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        for (int c = 0; c < kv; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, xOff + c);
            long o = (long) c * 2;
            a0 = loadF16(seg, b0 + o).fma(xv, a0);
            a1 = loadF16(seg, b1 + o).fma(xv, a1);
        }
        a0.intoArray(acc, ao);
        a1.intoArray(acc, ao + L);
    }

    private static void acc1F32(float[] x, int xOff, MemorySegment seg, long b0, int kv, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        for (int c = 0; c < kv; c += L) {
            a0 = loadF32(seg, b0 + (long) c * 4).fma(FloatVector.fromArray(F, x, xOff + c), a0);
        }
        a0.intoArray(acc, 0);
    }

    private static void acc1BF16(float[] x, int xOff, MemorySegment seg, long b0, int kv, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        for (int c = 0; c < kv; c += L) {
            a0 = loadBF16(seg, b0 + (long) c * 2).fma(FloatVector.fromArray(F, x, xOff + c), a0);
        }
        a0.intoArray(acc, 0);
    }

    private static void acc1F16(float[] x, int xOff, MemorySegment seg, long b0, int kv, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        for (int c = 0; c < kv; c += L) {
            a0 = loadF16(seg, b0 + (long) c * 2).fma(FloatVector.fromArray(F, x, xOff + c), a0);
        }
        a0.intoArray(acc, 0);
    }

    // ---------------------------------------------------------------------------------------
    // quantized weights (Q8_0, Q4_0, Q4_K; layouts in Quantizer)
    // ---------------------------------------------------------------------------------------
    //
    // Weights are dequantized in registers, L lanes at a time, and fed to the same fma chain as
    // the float kernels: lane l of the accumulator sees fma(w[c+l], x[c+l], acc) for c = 0, L, 2L,
    // ... in order, then hsum. Dequantization is exact (see Quantizer), so y is bitwise the F32
    // matmul of the dequantized matrix, whatever the tile, m or thread split: batch invariance
    // carries over unchanged, and the prefill path simply widens blocks into its float tile.
    // Rows are whole blocks of 32 or 256 weights, a multiple of L, so there is no scalar tail.
    // Activations stay float; the weights' bytes are what decode streams from DRAM.

    /** L int8 at byte off, as float (exact). */
    private static FloatVector q8(MemorySegment s, long off) {
        return (FloatVector) ByteVector.fromMemorySegment(B, s, off, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    /** L bytes at off, sign-extended to int lanes (nibbles are taken from them). */
    private static IntVector bytes(MemorySegment s, long off) {
        return (IntVector) ByteVector.fromMemorySegment(B, s, off, LE).convertShape(VectorOperators.B2I, I, 0);
    }

    /** Low nibbles of the byte lanes b as floats, q·d + c in one rounding (generic-width paths). */
    private static FloatVector lo(IntVector b, FloatVector d, FloatVector c) {
        return ((FloatVector) b.and(15).convert(VectorOperators.I2F, 0)).fma(d, c);
    }

    private static FloatVector hi(IntVector b, FloatVector d, FloatVector c) {
        return ((FloatVector) b.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d, c);
    }

    /** The f16 scale at byte b (exact widening; the CPU's vcvtph2ps when compiled). */
    private static float scale(MemorySegment s, long b) {
        return Float.float16ToFloat(s.get(Tensor.I16_LE, b));
    }

    /**
     * Rows {@code [r0, r1)} of {@code y = w x} for quantized w, one token. With 8 lanes (AVX2)
     * pairs of rows run through straight-line kernels, one block per loop iteration: C2 turns a
     * short inner loop over a block's vectors into pre/main/post loops whose bookkeeping costs
     * more than the work. Measured on the 2-vCPU Zen 3: four rows per pass were no faster for
     * Q8_0 and 35% slower for Q4_0 (register pressure), eight did not compile (node limit).
     * Other widths and odd rows take the one-row loops.
     */
    static void matvecQuantized(float[] x, int xOff, MemorySegment seg, DType dt, int k, float[] y, int yOff, int r0, int r1) {
        long rowBytes = dt.bytesFor(k);
        Scratch sc = scratch();
        float[] acc = sc.acc;
        if (B == null) {
            // Narrow vectors (4 lanes): decode each row to the heap (same exact values), then the F32 dot.
            float[] row = sc.tile(k);
            for (int r = r0; r < r1; r++) {
                Quantizer.dequantizeRow(seg, r * rowBytes, dt, row, 0, k);
                y[yOff + r] = dot1(row, 0, x, xOff, k, k, acc);
            }
            return;
        }
        int blocks = k / dt.blockSize();
        int r = r0;
        if (L == 8) {
            for (; r + 2 <= r1; r += 2) {
                long b0 = r * rowBytes;
                switch (dt) {
                    case Q8_0 -> acc2Q8_0(x, xOff, seg, b0, rowBytes, blocks, acc);
                    case Q4_0 -> acc2Q4_0(x, xOff, seg, b0, rowBytes, blocks, acc);
                    case Q4_K -> acc2Q4_K(x, xOff, seg, b0, rowBytes, blocks, acc, sc.factors);
                    default -> throw new IllegalStateException(dt.toString());
                }
                y[yOff + r] = hsum(acc, 0);
                y[yOff + r + 1] = hsum(acc, L);
            }
        }
        for (; r < r1; r++) {
            long b0 = r * rowBytes;
            switch (dt) {
                case Q8_0 -> acc1Q8_0(x, xOff, seg, b0, blocks, acc);
                case Q4_0 -> acc1Q4_0(x, xOff, seg, b0, blocks, acc);
                case Q4_K -> acc1Q4_K(x, xOff, seg, b0, blocks, acc, sc.factors);
                default -> throw new IllegalStateException(dt.toString());
            }
            y[yOff + r] = hsum(acc, 0);
        }
    }

    // The two-row kernels below are written out without helper methods on purpose: C2 always
    // inlines the Vector API's own (force-inline) methods, but stops inlining ordinary helpers
    // once a compilation's node budget is spent, and a helper that takes or returns a vector
    // then boxes it on every call (measured 4-5x slower). Leaves take scalars and arrays only.

    /** Two Q8_0 rows, 8 lanes: a block is 4 vectors per row, written out. Accumulators to acc[0], acc[L]. */
    private static void acc2Q8_0(float[] x, int xOff, MemorySegment seg, long b0, long rb, int blocks, float[] acc) {
        long b1 = b0 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        for (int blk = 0; blk < blocks; blk++) {
            long o = (long) blk * 34;
            FloatVector d0 = FloatVector.broadcast(F, scale(seg, b0 + o));
            FloatVector d1 = FloatVector.broadcast(F, scale(seg, b1 + o));
            long q0 = b0 + o + Quantizer.Q_QS;
            long q1 = b1 + o + Quantizer.Q_QS;
            int xb = xOff + blk * 32;
            FloatVector x0 = FloatVector.fromArray(F, x, xb + 0);
            FloatVector w00 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q0 + 0, LE).convertShape(VectorOperators.B2F, F, 0);
            FloatVector w10 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q1 + 0, LE).convertShape(VectorOperators.B2F, F, 0);
            a0 = w00.mul(d0).fma(x0, a0);
            a1 = w10.mul(d1).fma(x0, a1);
            FloatVector x1 = FloatVector.fromArray(F, x, xb + 8);
            FloatVector w01 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q0 + 8, LE).convertShape(VectorOperators.B2F, F, 0);
            FloatVector w11 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q1 + 8, LE).convertShape(VectorOperators.B2F, F, 0);
            a0 = w01.mul(d0).fma(x1, a0);
            a1 = w11.mul(d1).fma(x1, a1);
            FloatVector x2 = FloatVector.fromArray(F, x, xb + 16);
            FloatVector w02 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q0 + 16, LE).convertShape(VectorOperators.B2F, F, 0);
            FloatVector w12 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q1 + 16, LE).convertShape(VectorOperators.B2F, F, 0);
            a0 = w02.mul(d0).fma(x2, a0);
            a1 = w12.mul(d1).fma(x2, a1);
            FloatVector x3 = FloatVector.fromArray(F, x, xb + 24);
            FloatVector w03 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q0 + 24, LE).convertShape(VectorOperators.B2F, F, 0);
            FloatVector w13 = (FloatVector) ByteVector.fromMemorySegment(B, seg, q1 + 24, LE).convertShape(VectorOperators.B2F, F, 0);
            a0 = w03.mul(d0).fma(x3, a0);
            a1 = w13.mul(d1).fma(x3, a1);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
    }

    private static void acc1Q8_0(float[] x, int xOff, MemorySegment seg, long b0, int blocks, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 34;
            FloatVector d0 = FloatVector.broadcast(F, scale(seg, o));
            int xb = xOff + blk * 32;
            for (int j = 0; j < 32; j += L) {
                FloatVector w = (FloatVector) ByteVector.fromMemorySegment(B, seg, o + Quantizer.Q_QS + j, LE)
                        .convertShape(VectorOperators.B2F, F, 0);
                a0 = w.mul(d0).fma(FloatVector.fromArray(F, x, xb + j), a0);
            }
        }
        a0.intoArray(acc, 0);
    }

    /**
     * Two Q4_0 rows, 8 lanes: w = fma(q, d, −8d) = (q − 8)·d exactly. Bytes 0-7 of the quants give
     * elements 0-7 (low nibbles) and 16-23 (high), bytes 8-15 give 8-15 and 24-31; the fmas
     * run in element order, as the float scheme requires.
     */
    private static void acc2Q4_0(float[] x, int xOff, MemorySegment seg, long b0, long rb, int blocks, float[] acc) {
        long b1 = b0 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        for (int blk = 0; blk < blocks; blk++) {
            long o = (long) blk * 18;
            float s0 = scale(seg, b0 + o);
            float s1 = scale(seg, b1 + o);
            FloatVector d0 = FloatVector.broadcast(F, s0);
            FloatVector d1 = FloatVector.broadcast(F, s1);
            FloatVector m0 = FloatVector.broadcast(F, -8f * s0);
            FloatVector m1 = FloatVector.broadcast(F, -8f * s1);
            long q0 = b0 + o + Quantizer.Q_QS;
            long q1 = b1 + o + Quantizer.Q_QS;
            IntVector u0 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0, LE).convertShape(VectorOperators.B2I, I, 0);
            IntVector v0 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
            IntVector u1 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1, LE).convertShape(VectorOperators.B2I, I, 0);
            IntVector v1 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
            int xb = xOff + blk * 32;
            FloatVector x0 = FloatVector.fromArray(F, x, xb + 0);
            a0 = ((FloatVector) u0.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0)
                    .fma(x0, a0);
            a1 = ((FloatVector) u1.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1)
                    .fma(x0, a1);
            FloatVector x8 = FloatVector.fromArray(F, x, xb + 8);
            a0 = ((FloatVector) v0.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0)
                    .fma(x8, a0);
            a1 = ((FloatVector) v1.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1)
                    .fma(x8, a1);
            FloatVector x16 = FloatVector.fromArray(F, x, xb + 16);
            a0 = ((FloatVector) u0.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0)
                    .fma(x16, a0);
            a1 = ((FloatVector) u1.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1)
                    .fma(x16, a1);
            FloatVector x24 = FloatVector.fromArray(F, x, xb + 24);
            a0 = ((FloatVector) v0.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0)
                    .fma(x24, a0);
            a1 = ((FloatVector) v1.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1)
                    .fma(x24, a1);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
    }

    private static void acc1Q4_0(float[] x, int xOff, MemorySegment seg, long b0, int blocks, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 18;
            float s0 = scale(seg, o);
            FloatVector d0 = FloatVector.broadcast(F, s0);
            FloatVector m0 = FloatVector.broadcast(F, -8f * s0);
            int xb = xOff + blk * 32;
            for (int j = 0; j < 16; j += L) {
                IntVector u = (IntVector) ByteVector.fromMemorySegment(B, seg, o + Quantizer.Q_QS + j, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                FloatVector w = ((FloatVector) u.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0);
                a0 = w.fma(FloatVector.fromArray(F, x, xb + j), a0);
            }
            for (int j = 0; j < 16; j += L) {
                IntVector u = (IntVector) ByteVector.fromMemorySegment(B, seg, o + Quantizer.Q_QS + j, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                FloatVector w = ((FloatVector) u.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0);
                a0 = w.fma(FloatVector.fromArray(F, x, xb + 16 + j), a0);
            }
        }
        a0.intoArray(acc, 0);
    }

    /** Per-lane shifts and the lanes of sub-blocks 4..7, for the 8-lane Q4_K scale decode. */
    private static final IntVector K_SHIFTS = L == 8 ? IntVector.fromArray(I, new int[] {0, 8, 16, 24, 0, 8, 16, 24}, 0) : null;
    private static final VectorMask<Integer> K_HIGH_SUBBLOCKS = L == 8
            ? VectorMask.fromArray(I, new boolean[] {false, false, false, false, true, true, true, true}, 0) : null;

    /**
     * The 8 sub-block factors of the Q4_K super-block at byte b: f[fo + s] = d·sc[s] and
     * f[fo + 8 + s] = −dmin·m[s] (exact products), so that w = fma(q, f[s], f[8 + s]). The 12
     * scale bytes are read as one long and one int (see {@link Quantizer} for their packing).
     */
    static void factorsQ4_K(MemorySegment seg, long b, float[] f, int fo) {
        float d = scale(seg, b + Quantizer.K_D);
        float dmin = scale(seg, b + Quantizer.K_DMIN);
        long a = seg.get(I64_LE, b + Quantizer.K_SCALES);       // S[0..7]
        int c = seg.get(I32_LE, b + Quantizer.K_SCALES + 8);    // S[8..11]
        if (L == 8) {
            // lane s = sub-block s: shifts 8·(s mod 4) pick S[s] / S[s+4] / S[s+8] out of the words
            IntVector lo = IntVector.broadcast(I, (int) a).lanewise(VectorOperators.LSHR, K_SHIFTS);        // S[s mod 4]
            IntVector mid = IntVector.broadcast(I, (int) (a >>> 32)).lanewise(VectorOperators.LSHR, K_SHIFTS); // S[4 + s mod 4]
            IntVector top = IntVector.broadcast(I, c).lanewise(VectorOperators.LSHR, K_SHIFTS);            // S[8 + s mod 4]
            IntVector sc = lo.and(63).blend(top.and(15).or(lo.lanewise(VectorOperators.LSHR, 6).and(3).lanewise(VectorOperators.LSHL, 4)),
                    K_HIGH_SUBBLOCKS);
            IntVector mn = mid.and(63).blend(top.lanewise(VectorOperators.LSHR, 4).and(15)
                    .or(mid.lanewise(VectorOperators.LSHR, 6).and(3).lanewise(VectorOperators.LSHL, 4)), K_HIGH_SUBBLOCKS);
            ((FloatVector) sc.convert(VectorOperators.I2F, 0)).mul(d).intoArray(f, fo);
            ((FloatVector) mn.convert(VectorOperators.I2F, 0)).mul(-dmin).intoArray(f, fo + 8);
            return;
        }
        for (int s = 0; s < 4; s++) {
            int lo = (int) (a >>> (8 * s)) & 0xFF;              // S[s]
            int mid = (int) (a >>> (8 * s + 32)) & 0xFF;        // S[s + 4]
            int top = (c >>> (8 * s)) & 0xFF;                   // S[s + 8]
            f[fo + s] = d * (lo & 63);
            f[fo + 8 + s] = -(dmin * (mid & 63));
            f[fo + 4 + s] = d * ((top & 15) | (lo >> 6) << 4);
            f[fo + 12 + s] = -(dmin * ((top >> 4) | (mid >> 6) << 4));
        }
    }

    /**
     * Two Q4_K rows, 8 lanes: per super-block the 8 (scale, min) pairs of each row are decoded once
     * ({@link #factorsQ4_K}); each 32-byte chunk c of quants gives sub-block 2c (low nibbles,
     * elements 64c..64c+31) and then 2c+1 (high nibbles, the same bytes loaded again: an L1 hit
     * is cheaper than holding 8 more vectors across the chunk).
     */
    private static void acc2Q4_K(float[] x, int xOff, MemorySegment seg, long b0, long rb, int blocks, float[] acc, float[] f) {
        long b1 = b0 + rb;
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        // One chunk per iteration over all chunks of the row (a 4-trip loop per super-block would
        // cost C2's pre/main/post loop machinery more than its work); scales decoded every 4th.
        for (int ch = 0; ch < 4 * blocks; ch++) {
            int blk = ch >> 2;
            int c = ch & 3;
            long o = (long) blk * 144;
            if (c == 0) {
                factorsQ4_K(seg, b0 + o, f, 0);
                factorsQ4_K(seg, b1 + o, f, 16);
            }
            {
                long q0 = b0 + o + Quantizer.K_QS + 32L * c;
                long q1 = b1 + o + Quantizer.K_QS + 32L * c;
                int xb = xOff + 64 * ch;
                int s = 2 * c;
                FloatVector d0 = FloatVector.broadcast(F, f[s]);
                FloatVector m0 = FloatVector.broadcast(F, f[8 + s]);
                FloatVector d1 = FloatVector.broadcast(F, f[16 + s]);
                FloatVector m1 = FloatVector.broadcast(F, f[24 + s]);
                FloatVector x0 = FloatVector.fromArray(F, x, xb + 0);
                IntVector q000 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 0, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q100 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 0, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q000.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x0, a0);
                a1 = ((FloatVector) q100.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x0, a1);
                FloatVector x8 = FloatVector.fromArray(F, x, xb + 8);
                IntVector q001 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q101 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q001.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x8, a0);
                a1 = ((FloatVector) q101.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x8, a1);
                FloatVector x16 = FloatVector.fromArray(F, x, xb + 16);
                IntVector q002 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 16, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q102 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 16, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q002.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x16, a0);
                a1 = ((FloatVector) q102.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x16, a1);
                FloatVector x24 = FloatVector.fromArray(F, x, xb + 24);
                IntVector q003 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 24, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q103 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 24, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q003.and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x24, a0);
                a1 = ((FloatVector) q103.and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x24, a1);
                d0 = FloatVector.broadcast(F, f[s + 1]);
                m0 = FloatVector.broadcast(F, f[9 + s]);
                d1 = FloatVector.broadcast(F, f[17 + s]);
                m1 = FloatVector.broadcast(F, f[25 + s]);
                FloatVector x32 = FloatVector.fromArray(F, x, xb + 32);
                IntVector q010 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 0, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q110 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 0, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q010.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x32, a0);
                a1 = ((FloatVector) q110.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x32, a1);
                FloatVector x40 = FloatVector.fromArray(F, x, xb + 40);
                IntVector q011 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q111 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 8, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q011.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x40, a0);
                a1 = ((FloatVector) q111.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x40, a1);
                FloatVector x48 = FloatVector.fromArray(F, x, xb + 48);
                IntVector q012 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 16, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q112 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 16, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q012.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x48, a0);
                a1 = ((FloatVector) q112.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x48, a1);
                FloatVector x56 = FloatVector.fromArray(F, x, xb + 56);
                IntVector q013 = (IntVector) ByteVector.fromMemorySegment(B, seg, q0 + 24, LE).convertShape(VectorOperators.B2I, I, 0);
                IntVector q113 = (IntVector) ByteVector.fromMemorySegment(B, seg, q1 + 24, LE).convertShape(VectorOperators.B2I, I, 0);
                a0 = ((FloatVector) q013.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d0, m0).fma(x56, a0);
                a1 = ((FloatVector) q113.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d1, m1).fma(x56, a1);
            }
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
    }

    private static void acc1Q4_K(float[] x, int xOff, MemorySegment seg, long b0, int blocks, float[] acc, float[] f) {
        FloatVector a0 = FloatVector.zero(F);
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 144;
            factorsQ4_K(seg, o, f, 0);
            int xb = xOff + blk * 256;
            for (int c = 0; c < 4; c++) {
                long q = o + Quantizer.K_QS + 32L * c;
                int s = 2 * c;
                FloatVector dl = FloatVector.broadcast(F, f[s]);
                FloatVector ml = FloatVector.broadcast(F, f[8 + s]);
                FloatVector dh = FloatVector.broadcast(F, f[s + 1]);
                FloatVector mh = FloatVector.broadcast(F, f[9 + s]);
                for (int j = 0; j < 32; j += L) {
                    IntVector u = (IntVector) ByteVector.fromMemorySegment(B, seg, q + j, LE).convertShape(VectorOperators.B2I, I, 0);
                    FloatVector w = ((FloatVector) u.and(15).convert(VectorOperators.I2F, 0)).fma(dl, ml);
                    a0 = w.fma(FloatVector.fromArray(F, x, xb + 64 * c + j), a0);
                }
                for (int j = 0; j < 32; j += L) {
                    IntVector u = (IntVector) ByteVector.fromMemorySegment(B, seg, q + j, LE).convertShape(VectorOperators.B2I, I, 0);
                    FloatVector w = ((FloatVector) u.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(dh, mh);
                    a0 = w.fma(FloatVector.fromArray(F, x, xb + 64 * c + 32 + j), a0);
                }
            }
        }
        a0.intoArray(acc, 0);
    }

    /** Dequantizes {@code len} elements (whole blocks) from element {@code elem} into dst: the prefill tile. */
    static void widenQuantized(MemorySegment s, DType dt, long elem, float[] dst, int dOff, int len) {
        int bs = dt.blockSize();
        if (elem % bs != 0 || len % bs != 0) {
            throw new IllegalArgumentException(dt + ": widen of [" + elem + ", +" + len + ") cuts a block");
        }
        long b0 = elem / bs * dt.blockBytes();
        if (B == null) {
            Quantizer.dequantizeRow(s, b0, dt, dst, dOff, len);
            return;
        }
        int blocks = len / bs;
        switch (dt) {
            case Q8_0 -> widenQ8_0(s, b0, blocks, dst, dOff);
            case Q4_0 -> widenQ4_0(s, b0, blocks, dst, dOff);
            case Q4_K -> widenQ4_K(s, b0, blocks, dst, dOff);
            default -> throw new IllegalStateException(dt.toString());
        }
    }

    private static void widenQ8_0(MemorySegment s, long b0, int blocks, float[] dst, int dOff) {
        if (L == 8) {
            // One block per iteration, written out (a 4-trip inner loop costs C2 more than its work).
            for (int blk = 0; blk < blocks; blk++) {
                long o = b0 + (long) blk * 34;
                FloatVector d = FloatVector.broadcast(F, scale(s, o));
                long q = o + Quantizer.Q_QS;
                int t = dOff + blk * 32;
                q8(s, q).mul(d).intoArray(dst, t);
                q8(s, q + 8).mul(d).intoArray(dst, t + 8);
                q8(s, q + 16).mul(d).intoArray(dst, t + 16);
                q8(s, q + 24).mul(d).intoArray(dst, t + 24);
            }
            return;
        }
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 34;
            FloatVector d = FloatVector.broadcast(F, scale(s, o));
            int t = dOff + blk * 32;
            for (int j = 0; j < 32; j += L) {
                q8(s, o + Quantizer.Q_QS + j).mul(d).intoArray(dst, t + j);
            }
        }
    }

    private static void widenQ4_0(MemorySegment s, long b0, int blocks, float[] dst, int dOff) {
        if (L == 8) {
            for (int blk = 0; blk < blocks; blk++) {
                long o = b0 + (long) blk * 18;
                float sc = scale(s, o);
                FloatVector d = FloatVector.broadcast(F, sc);
                FloatVector m = FloatVector.broadcast(F, -8f * sc);
                IntVector u = (IntVector) ByteVector.fromMemorySegment(B, s, o + Quantizer.Q_QS, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                IntVector v = (IntVector) ByteVector.fromMemorySegment(B, s, o + Quantizer.Q_QS + 8, LE)
                        .convertShape(VectorOperators.B2I, I, 0);
                int t = dOff + blk * 32;
                ((FloatVector) u.and(15).convert(VectorOperators.I2F, 0)).fma(d, m).intoArray(dst, t);
                ((FloatVector) v.and(15).convert(VectorOperators.I2F, 0)).fma(d, m).intoArray(dst, t + 8);
                ((FloatVector) u.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d, m)
                        .intoArray(dst, t + 16);
                ((FloatVector) v.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(d, m)
                        .intoArray(dst, t + 24);
            }
            return;
        }
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 18;
            float sc = scale(s, o);
            FloatVector d = FloatVector.broadcast(F, sc);
            FloatVector m = FloatVector.broadcast(F, -8f * sc);
            int t = dOff + blk * 32;
            for (int j = 0; j < 16; j += L) {
                IntVector u = bytes(s, o + Quantizer.Q_QS + j);
                lo(u, d, m).intoArray(dst, t + j);
                hi(u, d, m).intoArray(dst, t + 16 + j);
            }
        }
    }

    private static void widenQ4_K(MemorySegment s, long b0, int blocks, float[] dst, int dOff) {
        float[] f = scratch().factors;
        for (int blk = 0; blk < blocks; blk++) {
            long o = b0 + (long) blk * 144;
            factorsQ4_K(s, o, f, 0);
            int t = dOff + blk * 256;
            for (int c = 0; c < 4; c++) {
                widenChunkQ4_K(s, o + Quantizer.K_QS + 32L * c, f[2 * c], f[8 + 2 * c], f[2 * c + 1], f[9 + 2 * c], dst, t + 64 * c);
            }
        }
    }

    /**
     * One 32-byte chunk of Q4_K quants: 64 weights, low nibbles (scale dl, offset ml) then high
     * (dh, mh), as two calls: C2 charges each Vector API call a few hundred parse nodes, and
     * one method holding all 8 conversions of a chunk exceeds the budget past which calls are
     * no longer inlined (the vectors then get boxed: 4× slower, measured).
     */
    private static void widenChunkQ4_K(MemorySegment s, long q, float dl, float ml, float dh, float mh, float[] dst, int t) {
        if (L == 8) {
            widenLow32(s, q, dl, ml, dst, t);
            widenHigh32(s, q, dh, mh, dst, t + 32);
        } else {
            FloatVector dlv = FloatVector.broadcast(F, dl);
            FloatVector mlv = FloatVector.broadcast(F, ml);
            FloatVector dhv = FloatVector.broadcast(F, dh);
            FloatVector mhv = FloatVector.broadcast(F, mh);
            for (int j = 0; j < 32; j += L) {
                IntVector u = bytes(s, q + j);
                lo(u, dlv, mlv).intoArray(dst, t + j);
                hi(u, dhv, mhv).intoArray(dst, t + 32 + j);
            }
        }
    }

    /**
     * 8 lanes: the low nibbles of 32 bytes at q, each q·d + c, into dst[t .. t+32). Written without
     * vector-passing helpers: if C2 stops inlining a helper that takes or returns a vector (its
     * node budget is spent), that vector is boxed on every call; a leaf that takes scalars can
     * be left as a plain call without harm.
     */
    private static void widenLow32(MemorySegment s, long q, float d, float c, float[] dst, int t) {
        FloatVector dv = FloatVector.broadcast(F, d);
        FloatVector cv = FloatVector.broadcast(F, c);
        IntVector b0 = (IntVector) ByteVector.fromMemorySegment(B, s, q, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b1 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 8, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b2 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 16, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b3 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 24, LE).convertShape(VectorOperators.B2I, I, 0);
        ((FloatVector) b0.and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t);
        ((FloatVector) b1.and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 8);
        ((FloatVector) b2.and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 16);
        ((FloatVector) b3.and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 24);
    }

    /** As {@link #widenLow32}, high nibbles. */
    private static void widenHigh32(MemorySegment s, long q, float d, float c, float[] dst, int t) {
        FloatVector dv = FloatVector.broadcast(F, d);
        FloatVector cv = FloatVector.broadcast(F, c);
        IntVector b0 = (IntVector) ByteVector.fromMemorySegment(B, s, q, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b1 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 8, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b2 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 16, LE).convertShape(VectorOperators.B2I, I, 0);
        IntVector b3 = (IntVector) ByteVector.fromMemorySegment(B, s, q + 24, LE).convertShape(VectorOperators.B2I, I, 0);
        ((FloatVector) b0.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t);
        ((FloatVector) b1.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 8);
        ((FloatVector) b2.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 16);
        ((FloatVector) b3.lanewise(VectorOperators.ASHR, 4).and(15).convert(VectorOperators.I2F, 0)).fma(dv, cv).intoArray(dst, t + 24);
    }

    /**
     * Rows {@code [r0, r1)} of y for all m tokens:
     * <pre>
     *   for each block of RB = 8 rows:                   accumulators of 8 rows × m tokens in st[]
     *     for each K block of up to 2048 columns:        widen w[rows, kblock] → wp (8 × KC floats)
     *       for each pair of tokens, group of 4 rows:    4×2 register tile over the K block
     *   then per (row, token): lane sum, scalar tail.
     * </pre>
     * Every accumulator lane sees the same fma sequence over K as in {@link #matvec}; between K
     * blocks it rests in st[] (a store and a load, exact), so the bits do not change. Measured on
     * the 2-vCPU Zen test machine: shorter K blocks (256, 512) and larger row blocks were slower
     * (short x streams defeat the prefetchers; C2 spills the 12 accumulators of a 4×3 tile).
     */
    static void batched(float[] x, int xOff, int m, MemorySegment seg, DType dt, int n, int k,
                        float[] y, int yOff, int r0, int r1) {
        int kv = F.loopBound(k);
        Scratch sc = scratch();
        int kcMax = KC_MAX;
        float[] wp = sc.tile(RB * kcMax);
        int ss = m * L; // state stride between rows
        float[] st = sc.state(RB * ss);
        for (int rb0 = r0; rb0 < r1; rb0 += RB) {
            int rbN = Math.min(RB, r1 - rb0);
            java.util.Arrays.fill(st, 0, rbN * ss, 0f);
            for (int c0 = 0; c0 < kv; c0 += kcMax) {
                int kc = Math.min(kcMax, kv - c0);
                for (int j = 0; j < rbN; j++) {
                    widen(seg, dt, (long) (rb0 + j) * k + c0, wp, j * kcMax, kc);
                }
                // Token pairs outer, row groups inner: the widened block (RB × kc floats, <= 64 KiB)
                // stays in L1/L2 and each pair's x slice is fetched once for both row groups.
                int full = rbN - rbN % ROWS;
                int i = 0;
                for (; i + TOKENS <= m; i += TOKENS) {
                    for (int j = 0; j < full; j += ROWS) {
                        tile4x2(wp, j * kcMax, kcMax, kc, x, xOff + i * k + c0, k, st, j * ss + i * L, ss);
                    }
                }
                for (; i < m; i++) {
                    for (int j = 0; j < full; j += ROWS) {
                        tile4x1(wp, j * kcMax, kcMax, kc, x, xOff + i * k + c0, st, j * ss + i * L, ss);
                    }
                }
                for (int j = full; j < rbN; j++) {
                    for (int t = 0; t < m; t++) {
                        tile1x1(wp, j * kcMax, kc, x, xOff + t * k + c0, st, j * ss + t * L);
                    }
                }
            }
            for (int j = 0; j < rbN; j++) {
                long rowElem = (long) (rb0 + j) * k;
                for (int i = 0; i < m; i++) {
                    y[yOff + i * n + rb0 + j] = tail(hsum(st, j * ss + i * L), x, xOff + i * k, seg, dt, rowElem, kv, k);
                }
            }
        }
    }

    /** Rows per block of {@link #batched} (two 4-row groups share each x slice). */
    static final int RB = 8;
    /** Largest K block of {@link #batched}: long blocks measured best (prefetchers stream x). */
    static final int KC_MAX = 2048;
    /** K blocks of {@link #batched} are multiples of this (and so of every vector length). */
    static final int KC_UNIT = 64;

    /** One dot product of the scheme above, both operands on the heap. */
    static float dot1(float[] a, int aOff, float[] b, int bOff, int k, int kv, float[] acc) {
        acc1Heap(a, aOff, b, bOff, kv, acc);
        return tailHeap(hsum(acc, 0), a, aOff, b, bOff, kv, k);
    }

    private static void acc1Heap(float[] a, int aOff, float[] b, int bOff, int kv, float[] acc) {
        FloatVector s = FloatVector.zero(F);
        for (int c = 0; c < kv; c += L) {
            s = FloatVector.fromArray(F, a, aOff + c).fma(FloatVector.fromArray(F, b, bOff + c), s);
        }
        s.intoArray(acc, 0);
    }

    private static float tailHeap(float s, float[] w, int wOff, float[] x, int x0, int kv, int k) {
        for (int c = kv; c < k; c++) {
            s = Math.fma(w[wOff + c], x[x0 + c], s);
        }
        return s;
    }

    /** 1 row (wp at w0) × 1 token over {@code kc} columns; accumulator state at st[s0]. */
    private static void tile1x1(float[] wp, int w0, int kc, float[] x, int x0, float[] st, int s0) {
        FloatVector a = FloatVector.fromArray(F, st, s0);
        for (int c = 0; c < kc; c += L) {
            a = FloatVector.fromArray(F, wp, w0 + c).fma(FloatVector.fromArray(F, x, x0 + c), a);
        }
        a.intoArray(st, s0);
    }

    /** 4 rows (wp at w0, stride ws) × 1 token; state of row j at st[s0 + j ss]. */
    private static void tile4x1(float[] wp, int w0, int ws, int kc, float[] x, int x0, float[] st, int s0, int ss) {
        FloatVector a0 = FloatVector.fromArray(F, st, s0);
        FloatVector a1 = FloatVector.fromArray(F, st, s0 + ss);
        FloatVector a2 = FloatVector.fromArray(F, st, s0 + 2 * ss);
        FloatVector a3 = FloatVector.fromArray(F, st, s0 + 3 * ss);
        int w1 = w0 + ws;
        int w2 = w1 + ws;
        int w3 = w2 + ws;
        for (int c = 0; c < kc; c += L) {
            FloatVector xv = FloatVector.fromArray(F, x, x0 + c);
            a0 = FloatVector.fromArray(F, wp, w0 + c).fma(xv, a0);
            a1 = FloatVector.fromArray(F, wp, w1 + c).fma(xv, a1);
            a2 = FloatVector.fromArray(F, wp, w2 + c).fma(xv, a2);
            a3 = FloatVector.fromArray(F, wp, w3 + c).fma(xv, a3);
        }
        a0.intoArray(st, s0);
        a1.intoArray(st, s0 + ss);
        a2.intoArray(st, s0 + 2 * ss);
        a3.intoArray(st, s0 + 3 * ss);
    }

    /**
     * 4 rows (wp at w0, stride ws) × 2 tokens (x at x0, stride xs) over {@code kc} columns: 8
     * FMA chains, each weight vector used twice, each x vector four times; weights streamed one
     * vector at a time. State of (row j,
     * token u) at st[s0 + j ss + u L]. (4×2 and 2×4 measured fastest on AVX2 with C2, whose
     * unrolling spills the 12 accumulators of a 4×3 tile out of the 16 registers.)
     */
    private static void tile4x2(float[] wp, int w0, int ws, int kc, float[] x, int x0, int xs,
                                float[] st, int s0, int ss) {
        int s1 = s0 + ss;
        int s2 = s1 + ss;
        int s3 = s2 + ss;
        FloatVector a00 = FloatVector.fromArray(F, st, s0);
        FloatVector a01 = FloatVector.fromArray(F, st, s0 + L);
        FloatVector a10 = FloatVector.fromArray(F, st, s1);
        FloatVector a11 = FloatVector.fromArray(F, st, s1 + L);
        FloatVector a20 = FloatVector.fromArray(F, st, s2);
        FloatVector a21 = FloatVector.fromArray(F, st, s2 + L);
        FloatVector a30 = FloatVector.fromArray(F, st, s3);
        FloatVector a31 = FloatVector.fromArray(F, st, s3 + L);
        int w1 = w0 + ws;
        int w2 = w1 + ws;
        int w3 = w2 + ws;
        int x1 = x0 + xs;
        for (int c = 0; c < kc; c += L) {
            // both tokens' x first, then one weight vector at a time, each used at once for both
            // tokens: 11 live registers, and C2 keeps this order, which ran 1.5× faster (53–60 vs
            // 36 GFLOP/s on one Zen 3 thread, L1-resident) than loading the 4 weight vectors first
            FloatVector p = FloatVector.fromArray(F, x, x0 + c);
            FloatVector q = FloatVector.fromArray(F, x, x1 + c);
            FloatVector v = FloatVector.fromArray(F, wp, w0 + c);
            a00 = v.fma(p, a00);
            a01 = v.fma(q, a01);
            v = FloatVector.fromArray(F, wp, w1 + c);
            a10 = v.fma(p, a10);
            a11 = v.fma(q, a11);
            v = FloatVector.fromArray(F, wp, w2 + c);
            a20 = v.fma(p, a20);
            a21 = v.fma(q, a21);
            v = FloatVector.fromArray(F, wp, w3 + c);
            a30 = v.fma(p, a30);
            a31 = v.fma(q, a31);
        }
        a00.intoArray(st, s0);
        a01.intoArray(st, s0 + L);
        a10.intoArray(st, s1);
        a11.intoArray(st, s1 + L);
        a20.intoArray(st, s2);
        a21.intoArray(st, s2 + L);
        a30.intoArray(st, s3);
        a31.intoArray(st, s3 + L);
    }

    // ---------------------------------------------------------------------------------------
    // elementwise and small kernels
    // ---------------------------------------------------------------------------------------

    /** Same as {@link ScalarKernels#rmsnorm}; the sum of squares is a float vector sum (see tests for tolerance). */
    public static void rmsnorm(float[] x, int xOff, int m, int n, Tensor weight, float eps, float[] out, int outOff) {
        Objects.checkFromIndexSize(xOff, Math.multiplyExact(m, n), x.length);
        Objects.checkFromIndexSize(outOff, Math.multiplyExact(m, n), out.length);
        if (weight != null && weight.size() < n) {
            throw new IllegalArgumentException(weight + ": rmsnorm needs " + n + " weights");
        }
        int nv = F.loopBound(n);
        float[] acc = scratch().acc;
        for (int i = 0; i < m; i++) {
            int xb = xOff + i * n;
            int ob = outOff + i * n;
            sumSquares(x, xb, nv, acc);
            double ss = hsum(acc, 0);
            for (int j = nv; j < n; j++) {
                float v = x[xb + j];
                ss += v * v;
            }
            float inv = (float) (1.0 / Math.sqrt(ss / n + eps));
            if (weight == null) {
                scale(x, xb, inv, out, ob, nv);
            } else {
                switch (weight.dtype()) {
                    case F32 -> scaleF32(x, xb, inv, weight.data(), out, ob, nv);
                    case BF16 -> scaleBF16(x, xb, inv, weight.data(), out, ob, nv);
                    case F16 -> scaleF16(x, xb, inv, weight.data(), out, ob, nv);
                    case Q8_0, Q4_0, Q4_K -> throw new IllegalArgumentException(weight + ": rmsnorm weights must not be quantized");
                }
            }
            for (int j = nv; j < n; j++) {
                out[ob + j] = weight == null ? x[xb + j] * inv : x[xb + j] * inv * weight.getFloat(j);
            }
        }
    }

    private static void sumSquares(float[] x, int xb, int nv, float[] acc) {
        FloatVector a = FloatVector.zero(F);
        for (int j = 0; j < nv; j += L) {
            FloatVector v = FloatVector.fromArray(F, x, xb + j);
            a = v.fma(v, a);
        }
        a.intoArray(acc, 0);
    }

    private static void scale(float[] x, int xb, float inv, float[] out, int ob, int nv) {
        for (int j = 0; j < nv; j += L) {
            FloatVector.fromArray(F, x, xb + j).mul(inv).intoArray(out, ob + j);
        }
    }

    private static void scaleF32(float[] x, int xb, float inv, MemorySegment w, float[] out, int ob, int nv) {
        for (int j = 0; j < nv; j += L) {
            FloatVector.fromArray(F, x, xb + j).mul(inv).mul(loadF32(w, (long) j * 4)).intoArray(out, ob + j);
        }
    }

    private static void scaleBF16(float[] x, int xb, float inv, MemorySegment w, float[] out, int ob, int nv) {
        for (int j = 0; j < nv; j += L) {
            FloatVector.fromArray(F, x, xb + j).mul(inv).mul(loadBF16(w, (long) j * 2)).intoArray(out, ob + j);
        }
    }

    private static void scaleF16(float[] x, int xb, float inv, MemorySegment w, float[] out, int ob, int nv) {
        for (int j = 0; j < nv; j += L) {
            FloatVector.fromArray(F, x, xb + j).mul(inv).mul(loadF16(w, (long) j * 2)).intoArray(out, ob + j);
        }
    }

    /** In-place softmax; exp is {@link #exp}, within 2 ulp of {@code Math.exp}. */
    public static void softmax(float[] x, int off, int n) {
        Objects.checkFromIndexSize(off, n, x.length);
        softmax(x, off, n, scratch().acc);
    }

    static void softmax(float[] x, int off, int n, float[] acc) {
        int nv = F.loopBound(n);
        maxLanes(x, off, nv, acc);
        float max = Float.NEGATIVE_INFINITY;
        for (int l = 0; l < L; l++) {
            max = Math.max(max, acc[l]);
        }
        for (int i = nv; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        expLanes(x, off, nv, max, acc);
        float sum = hsum(acc, 0);
        for (int i = nv; i < n; i++) {
            float e = expScalar(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        int i = 0;
        for (; i < nv; i += L) {
            FloatVector.fromArray(F, x, off + i).mul(inv).intoArray(x, off + i);
        }
        for (; i < n; i++) {
            x[off + i] *= inv;
        }
    }

    private static void maxLanes(float[] x, int off, int nv, float[] acc) {
        FloatVector mv = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (int i = 0; i < nv; i += L) {
            mv = mv.max(FloatVector.fromArray(F, x, off + i));
        }
        mv.intoArray(acc, 0);
    }

    /** x[i] = exp(x[i] - max) over the vector part; lane sums of the results to acc. */
    private static void expLanes(float[] x, int off, int nv, float max, float[] acc) {
        FloatVector sum = FloatVector.zero(F);
        for (int i = 0; i < nv; i += L) {
            FloatVector e = exp(FloatVector.fromArray(F, x, off + i).sub(max));
            e.intoArray(x, off + i);
            sum = sum.add(e);
        }
        sum.intoArray(acc, 0);
    }

    /** {@code out = silu(gate) * up}; out may be gate or up at the same offset (in place). */
    public static void siluMul(float[] gate, int gOff, float[] up, int uOff, float[] out, int outOff, int n) {
        Objects.checkFromIndexSize(gOff, n, gate.length);
        Objects.checkFromIndexSize(uOff, n, up.length);
        Objects.checkFromIndexSize(outOff, n, out.length);
        int nv = F.loopBound(n);
        for (int i = 0; i < nv; i += L) {
            FloatVector g = FloatVector.fromArray(F, gate, gOff + i);
            FloatVector u = FloatVector.fromArray(F, up, uOff + i);
            g.div(exp(g.neg()).add(1f)).mul(u).intoArray(out, outOff + i);
        }
        for (int i = nv; i < n; i++) {
            float g = gate[gOff + i];
            out[outOff + i] = g / (1f + expScalar(-g)) * up[uOff + i];
        }
    }

    /** {@code y += a * x}; bitwise equal to the scalar twin (multiply, then add; no fma). */
    public static void axpy(float a, float[] x, int xOff, float[] y, int yOff, int n) {
        Objects.checkFromIndexSize(xOff, n, x.length);
        Objects.checkFromIndexSize(yOff, n, y.length);
        int nv = F.loopBound(n);
        int i = 0;
        for (; i < nv; i += L) {
            FloatVector.fromArray(F, x, xOff + i).mul(a).add(FloatVector.fromArray(F, y, yOff + i))
                    .intoArray(y, yOff + i);
        }
        for (; i < n; i++) {
            y[yOff + i] += a * x[xOff + i];
        }
    }

    /** Dot product with the matmul's accumulation scheme: equals a 1-row F32 matmul bit for bit. */
    public static float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        Objects.checkFromIndexSize(aOff, n, a.length);
        Objects.checkFromIndexSize(bOff, n, b.length);
        return dot1(a, aOff, b, bOff, n, F.loopBound(n), scratch().acc);
    }

    /** Rotary embedding; NEOX pairs are contiguous halves and vectorize, INTERLEAVED stays scalar. */
    public static void rope(float[] x, int off, int nHeads, int headDim, int rotaryDim,
                            float[] cos, float[] sin, int csOff, RopeStyle style) {
        int half = rotaryDim / 2;
        if (style != RopeStyle.NEOX || half < L) {
            ScalarKernels.rope(x, off, nHeads, headDim, rotaryDim, cos, sin, csOff, style);
            return;
        }
        Objects.checkFromIndexSize(off, Math.multiplyExact(nHeads, headDim), x.length);
        Objects.checkFromIndexSize(csOff, half, cos.length);
        Objects.checkFromIndexSize(csOff, half, sin.length);
        int hv = F.loopBound(half);
        for (int h = 0; h < nHeads; h++) {
            int b = off + h * headDim;
            int i = 0;
            for (; i < hv; i += L) {
                FloatVector c = FloatVector.fromArray(F, cos, csOff + i);
                FloatVector s = FloatVector.fromArray(F, sin, csOff + i);
                FloatVector x0 = FloatVector.fromArray(F, x, b + i);
                FloatVector x1 = FloatVector.fromArray(F, x, b + half + i);
                x0.mul(c).sub(x1.mul(s)).intoArray(x, b + i);
                x1.mul(c).add(x0.mul(s)).intoArray(x, b + half + i);
            }
            for (; i < half; i++) {
                float c = cos[csOff + i];
                float s = sin[csOff + i];
                float x0 = x[b + i];
                float x1 = x[b + half + i];
                x[b + i] = x0 * c - x1 * s;
                x[b + half + i] = x1 * c + x0 * s;
            }
        }
    }

    /** Below this many multiply-adds (all heads) attention runs on the caller alone. */
    static final long ATTENTION_SERIAL_MACS = 1L << 16;

    /**
     * Same contract as {@link ScalarKernels#attention}. Runs heads in parallel on the common pool
     * when there is enough work; then {@code scores} is left untouched and per-thread buffers are
     * used instead (it is scratch either way).
     */
    public static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff,
                                 int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                 int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        attention(q, qOff, keys, kOff, values, vOff, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                headDimK, headDimV, scale, out, outOff, scores, KernelPool.common());
    }

    public static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff,
                                 int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                 int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores,
                                 KernelPool pool) {
        if (nKeys > 0) {
            Objects.checkFromIndexSize(kOff, (long) (nKeys - 1) * kvStrideK + (long) nKvHeads * headDimK, keys.length);
            Objects.checkFromIndexSize(vOff, (long) (nKeys - 1) * kvStrideV + (long) nKvHeads * headDimV, values.length);
        }
        attention(q, qOff, keys, kOff, values, vOff, null, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                headDimK, headDimV, scale, out, outOff, scores, pool);
    }

    /**
     * Same contract as {@link ScalarKernels#attentionRows}: key t is row {@code rows[t]} of
     * keys/values (a paged KV cache). Same parallelism and scratch rules as {@link #attention}.
     */
    public static void attentionRows(float[] q, int qOff, float[] keys, float[] values, int[] rows,
                                     int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                     int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores) {
        attentionRows(q, qOff, keys, values, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                headDimK, headDimV, scale, out, outOff, scores, KernelPool.common());
    }

    public static void attentionRows(float[] q, int qOff, float[] keys, float[] values, int[] rows,
                                     int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                     int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores,
                                     KernelPool pool) {
        Objects.checkFromIndexSize(0, nKeys, rows.length);
        long needK = (long) nKvHeads * headDimK;
        long needV = (long) nKvHeads * headDimV;
        for (int t = 0; t < nKeys; t++) {
            int r = rows[t];
            Objects.checkFromIndexSize((long) r * kvStrideK, needK, keys.length);
            Objects.checkFromIndexSize((long) r * kvStrideV, needV, values.length);
        }
        attention(q, qOff, keys, 0, values, 0, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                headDimK, headDimV, scale, out, outOff, scores, pool);
    }

    /** Both forms; rows == null means key t is row t. Bounds of keys/values checked by the caller. */
    private static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff, int[] rows,
                                  int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                  int headDimK, int headDimV, float scale, float[] out, int outOff, float[] scores,
                                  KernelPool pool) {
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0) {
            throw new IllegalArgumentException("nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        }
        Objects.checkFromIndexSize(qOff, Math.multiplyExact(nHeads, headDimK), q.length);
        Objects.checkFromIndexSize(outOff, Math.multiplyExact(nHeads, headDimV), out.length);
        long macs = (long) nHeads * nKeys * (headDimK + headDimV);
        if (macs < ATTENTION_SERIAL_MACS || pool.threads() == 1 || nHeads == 1) {
            if (scores.length < nKeys) {
                throw new IllegalArgumentException("scores needs " + nKeys + " floats, has " + scores.length);
            }
            Scratch sc = scratch();
            int[] rs = rows != null ? rows : sc.identity(nKeys);
            for (int h = 0; h < nHeads; h++) {
                attentionHead(q, qOff, keys, kOff, values, vOff, rs, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads,
                        headDimK, headDimV, scale, out, outOff, scores, sc.acc, h);
            }
            return;
        }
        int group = nHeads / nKvHeads;
        // Chunks of whole GQA groups when that still gives every thread work, so heads reading the
        // same KV head run together and share it in cache.
        int chunk = nKvHeads >= pool.threads() ? group : 1;
        AttnJob j = ATTN_JOB.get();
        j.q = q; j.qOff = qOff; j.keys = keys; j.kOff = kOff; j.values = values; j.vOff = vOff; j.rows = rows;
        j.kvStrideK = kvStrideK; j.kvStrideV = kvStrideV; j.nKeys = nKeys; j.nHeads = nHeads; j.nKvHeads = nKvHeads;
        j.headDimK = headDimK; j.headDimV = headDimV; j.scale = scale; j.out = out; j.outOff = outOff;
        try {
            pool.parallelFor(nHeads, chunk, j);
        } finally {
            j.q = null; j.keys = null; j.values = null; j.rows = null; j.out = null;
        }
    }

    /**
     * One query head: scores (dot products of the matmul's scheme, four keys at a time), softmax,
     * then the probability-weighted sum of values, four output vectors at a time, keys in order.
     */
    private static void attentionHead(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff, int[] rows,
                                      int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads,
                                      int headDimK, int headDimV, float scale, float[] out, int outOff,
                                      float[] scores, float[] acc, int h) {
        int g = h / (nHeads / nKvHeads);
        int qb = qOff + h * headDimK;
        int kb = kOff + g * headDimK;
        int dkv = F.loopBound(headDimK);
        int t = 0;
        for (; t + 4 <= nKeys; t += 4) {
            int k0 = kb + rows[t] * kvStrideK;
            int k1 = kb + rows[t + 1] * kvStrideK;
            int k2 = kb + rows[t + 2] * kvStrideK;
            int k3 = kb + rows[t + 3] * kvStrideK;
            scores4(q, qb, keys, k0, k1, k2, k3, dkv, acc);
            scores[t] = tailHeap(hsum(acc, 0), keys, k0, q, qb, dkv, headDimK) * scale;
            scores[t + 1] = tailHeap(hsum(acc, L), keys, k1, q, qb, dkv, headDimK) * scale;
            scores[t + 2] = tailHeap(hsum(acc, 2 * L), keys, k2, q, qb, dkv, headDimK) * scale;
            scores[t + 3] = tailHeap(hsum(acc, 3 * L), keys, k3, q, qb, dkv, headDimK) * scale;
        }
        for (; t < nKeys; t++) {
            scores[t] = dot1(keys, kb + rows[t] * kvStrideK, q, qb, headDimK, dkv, acc) * scale;
        }
        softmax(scores, 0, nKeys, acc);
        int ob = outOff + h * headDimV;
        int vb = vOff + g * headDimV;
        int dvv = F.loopBound(headDimV);
        int d = 0;
        for (; d + 4 * L <= dvv; d += 4 * L) {
            weightedValues4(scores, nKeys, values, vb + d, rows, kvStrideV, out, ob + d);
        }
        for (; d < dvv; d += L) {
            weightedValues1(scores, nKeys, values, vb + d, rows, kvStrideV, out, ob + d);
        }
        for (; d < headDimV; d++) {
            float o = 0f;
            for (int s = 0; s < nKeys; s++) {
                o = Math.fma(scores[s], values[vb + rows[s] * kvStrideV + d], o);
            }
            out[ob + d] = o;
        }
    }

    /** Dot products of one query head with 4 keys at k0..k3: accumulators to acc. */
    private static void scores4(float[] q, int qb, float[] keys, int k0, int k1, int k2, int k3, int dkv, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0;
        FloatVector a2 = a0;
        FloatVector a3 = a0;
        for (int d = 0; d < dkv; d += L) {
            FloatVector qv = FloatVector.fromArray(F, q, qb + d);
            a0 = FloatVector.fromArray(F, keys, k0 + d).fma(qv, a0);
            a1 = FloatVector.fromArray(F, keys, k1 + d).fma(qv, a1);
            a2 = FloatVector.fromArray(F, keys, k2 + d).fma(qv, a2);
            a3 = FloatVector.fromArray(F, keys, k3 + d).fma(qv, a3);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, L);
        a2.intoArray(acc, 2 * L);
        a3.intoArray(acc, 3 * L);
    }

    /** out[o .. o+4L) = sum_s p[s] * values[vb + rows[s] vs .. +4L), keys in order. */
    private static void weightedValues4(float[] p, int nKeys, float[] values, int vb, int[] rows, int vs, float[] out, int o) {
        FloatVector o0 = FloatVector.zero(F);
        FloatVector o1 = o0;
        FloatVector o2 = o0;
        FloatVector o3 = o0;
        for (int s = 0; s < nKeys; s++) {
            int b = vb + rows[s] * vs;
            FloatVector ps = FloatVector.broadcast(F, p[s]);
            o0 = FloatVector.fromArray(F, values, b).fma(ps, o0);
            o1 = FloatVector.fromArray(F, values, b + L).fma(ps, o1);
            o2 = FloatVector.fromArray(F, values, b + 2 * L).fma(ps, o2);
            o3 = FloatVector.fromArray(F, values, b + 3 * L).fma(ps, o3);
        }
        o0.intoArray(out, o);
        o1.intoArray(out, o + L);
        o2.intoArray(out, o + 2 * L);
        o3.intoArray(out, o + 3 * L);
    }

    private static void weightedValues1(float[] p, int nKeys, float[] values, int vb, int[] rows, int vs, float[] out, int o) {
        FloatVector o0 = FloatVector.zero(F);
        for (int s = 0; s < nKeys; s++) {
            o0 = FloatVector.fromArray(F, values, vb + rows[s] * vs).fma(FloatVector.broadcast(F, p[s]), o0);
        }
        o0.intoArray(out, o);
    }

    // ---------------------------------------------------------------------------------------
    // exp
    // ---------------------------------------------------------------------------------------

    private static final float LOG2E = 1.44269504088896341f;
    /** ln 2 split so that n * LN2_HI is exact for |n| < 2^15 (Cephes expf). */
    private static final float LN2_HI = 0.693359375f;
    private static final float LN2_LO = -2.12194440e-4f;
    /** 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits. */
    private static final float ROUND_MAGIC = 0x1.8p23f;
    private static final float EXP_LO = -104f;
    private static final float EXP_HI = 89f;
    private static final float P0 = 1.9875691500e-4f;
    private static final float P1 = 1.3981999507e-3f;
    private static final float P2 = 8.3334519073e-3f;
    private static final float P3 = 4.1665795894e-2f;
    private static final float P4 = 1.6666665459e-1f;
    private static final float P5 = 5.0000001201e-1f;

    /**
     * e^x lane-wise, within 2 ulp of {@code Math.exp} (Cephes expf: x = n ln2 + r, |r| &lt;= ln2/2,
     * degree-6 polynomial, scale by 2^n in two halves so that results down to the subnormal
     * range round once). Built from fma/mul/add and bit moves only, so it gives the same bits
     * in compiled and interpreted code, unlike {@code lanewise(EXP)}.
     */
    static FloatVector exp(FloatVector x) {
        FloatVector xc = x.max(EXP_LO).min(EXP_HI);
        FloatVector t = xc.mul(LOG2E).add(ROUND_MAGIC);
        IntVector n = t.reinterpretAsInts().sub(0x4B400000);
        FloatVector nf = t.sub(ROUND_MAGIC);
        FloatVector r = nf.fma(FloatVector.broadcast(F, -LN2_HI), xc);
        r = nf.fma(FloatVector.broadcast(F, -LN2_LO), r);
        FloatVector p = r.fma(P0, P1);
        p = p.fma(r, FloatVector.broadcast(F, P2));
        p = p.fma(r, FloatVector.broadcast(F, P3));
        p = p.fma(r, FloatVector.broadcast(F, P4));
        p = p.fma(r, FloatVector.broadcast(F, P5));
        p = p.fma(r.mul(r), r).add(1f);
        IntVector n1 = n.lanewise(VectorOperators.ASHR, 1);
        IntVector n2 = n.sub(n1);
        FloatVector s1 = n1.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        FloatVector s2 = n2.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats();
        return p.mul(s1).mul(s2);
    }

    /** The scalar form of {@link #exp}, same operations in the same order, for tails. */
    static float expScalar(float x) {
        float xc = Math.min(Math.max(x, EXP_LO), EXP_HI);
        float t = xc * LOG2E + ROUND_MAGIC;
        int n = Float.floatToRawIntBits(t) - 0x4B400000;
        float nf = t - ROUND_MAGIC;
        float r = Math.fma(nf, -LN2_HI, xc);
        r = Math.fma(nf, -LN2_LO, r);
        float p = Math.fma(r, P0, P1);
        p = Math.fma(p, r, P2);
        p = Math.fma(p, r, P3);
        p = Math.fma(p, r, P4);
        p = Math.fma(p, r, P5);
        p = Math.fma(p, r * r, r) + 1f;
        int n1 = n >> 1;
        int n2 = n - n1;
        return p * Float.intBitsToFloat((n1 + 127) << 23) * Float.intBitsToFloat((n2 + 127) << 23);
    }
}
