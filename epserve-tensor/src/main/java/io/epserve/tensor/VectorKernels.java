package io.epserve.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * The fast twin of {@link ScalarKernels}: the one place the Vector API appears (DESIGN.md §3.1),
 * together with the package-private kernel classes it delegates to (see "Where the code is").
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
 * whatever m is, whichever register tile (4 rows × 2 tokens, 4 × 1, 1 × 1, 3 × 3, 2 × 4...), K block or thread
 * computes it, and wherever x and y start. Only IEEE-exact operations are used (fma, add, exact dtype
 * widening), never {@code reduceLanes(ADD)}, whose order the JIT may change; so the result is
 * bitwise the same in the interpreter and in compiled code, and a token's output never depends
 * on its batch. The lane count is fixed per JVM (it is the CPU's preferred vector size), so
 * results may differ between machines with different vector widths, never within one.
 *
 * <p>Block-quantized weights (Q8_0, Q4_0, Q4_K, see {@link Quantizer}) enter the same scheme
 * under {@link QuantizedActivations#F32}: each weight is decoded exactly to float in registers,
 * so the result is bitwise the F32 matmul of the dequantized matrix (see {@link QuantizedKernels}).
 * Under {@link QuantizedActivations#INT8} (the default) Q8_0 and Q4_0 products instead quantize
 * each token's activations to 8 bits and follow the integer scheme of
 * {@link ScalarKernels#dotInt8} ({@link Int8Kernels}), equally batch-invariant.
 *
 * <h2>Shapes of the matmul</h2>
 * m = 1 (decode, memory-bound): eight weight rows at a time for BF16, four for F32, two for
 * F16, converted in registers, one x load shared by all of them. 2 ≤ m ≤ 4 with BF16 weights
 * ({@link DenseKernels#fewTokens}): the same, with every widened weight vector used at once for
 * all m tokens (tiles 4 × 2, 3 × 3, 2 × 4), so the weights stream in once and nothing is staged.
 * 5 ≤ m ≤ 24 with BF16 weights (the few tokens per expert of a decode batch,
 * {@link GroupKernels}): groups of 8 tokens whose activations are packed side by side, one
 * widened weight vector feeding 8 FMAs, weights streamed once per group.
 * Larger m, and other dtypes (prefill, compute-bound): cache-blocked (see
 * {@link DenseKernels#batched}); a block of 8 rows × one K block is widened into a small
 * per-thread float tile (never the whole matrix), then every pair of tokens runs a 4 × 2
 * register tile: per K chunk 2 x loads and 4 weight loads feed 8 independent FMA chains, so each
 * weight vector serves two tokens and each x vector four rows.
 *
 * <h2>Where the code is</h2>
 * This class holds the public entry points, the species and shared constants, dtype widening
 * ({@link #widen}), the lane sum {@link #hsum}, the per-thread {@link Scratch}, the matmul entry
 * point and its dispatch by m and dtype ({@link #rows}), the elementwise kernels (rmsnorm,
 * softmax, siluMul, axpy, dot, rope, exp) and the argument checks of attention. The loops behind
 * them are in package-private classes of this package: {@link DenseKernels} (F32/BF16/F16
 * weights: matvec, fewTokens, batched and their register tiles, the heap dot product),
 * {@link QuantizedKernels} (Q8_0/Q4_0/Q4_K matvec and widening) and {@link AttentionKernels}
 * (attention heads: scores, softmax, weighted values; parallel over heads).
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
    static final ValueLayout.OfLong I64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(LE);
    static final ValueLayout.OfInt I32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(LE);

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
            case Q8_0, Q4_0, Q4_K, MXFP4 -> Quantizer.dequantize(s, dt, elem);
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
            QuantizedKernels.widenQuantized(s, dt, elem, dst, dOff, len);
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

        float[] groups = new float[0];

        /** Packed activations of {@link GroupKernels}. */
        float[] groups(int size) {
            if (groups.length < size) {
                groups = new float[Math.max(size, groups.length * 2)];
            }
            return groups;
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
        matmul(x, xOff, m, w, y, yOff, pool, QuantizedActivations.configured());
    }

    /** As {@link #matmul(float[], int, int, Tensor, float[], int, KernelPool)}, quantized weights under the given scheme. */
    static void matmul(float[] x, int xOff, int m, Tensor w, float[] y, int yOff, KernelPool pool, QuantizedActivations activations) {
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
        if (activations == QuantizedActivations.INT8 && Int8Kernels.handles(dt)) {
            Int8Kernels.matmul(x, xOff, m, seg, dt, n, k, y, yOff, pool);
            return;
        }
        int chunk = chunkRows(pool, m, n, k, m == 1 ? ROWS : DenseKernels.RB);
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
    private static final ThreadLocal<MatmulJob> MATMUL_JOB = ThreadLocal.withInitial(MatmulJob::new);

    /**
     * Rows per parallel chunk of an m × n × k matmul (a multiple of {@code unit}), or n when it
     * runs on the caller alone. Many small chunks: a thread that loses its CPU to another
     * process (the machines are shared) then delays the call by one small chunk, not by a
     * quarter of the work.
     */
    static int chunkRows(KernelPool pool, int m, int n, int k, int unit) {
        long macs = (long) m * n * k;
        if (macs < SERIAL_MACS || pool.threads() == 1) {
            return n;
        }
        int target = pool.threads() * 8;
        long rows = Math.max((n + target - 1) / target, (MIN_CHUNK_MACS + (long) m * k - 1) / ((long) m * k));
        return (int) Math.min(n, roundUp(rows, unit));
    }

    private static long roundUp(long v, int q) {
        return (v + q - 1) / q * q;
    }

    /** Rows {@code [r0, r1)} of y for m tokens, by the kernel for that m and dtype. */
    static void rows(float[] x, int xOff, int m, MemorySegment seg, DType dt, int n, int k, float[] y, int yOff, int r0, int r1) {
        if (m == 1) {
            DenseKernels.matvec(x, xOff, seg, dt, k, y, yOff, r0, r1);
        } else if (m <= FEW_TOKENS && dt == DType.BF16) {
            DenseKernels.fewTokens(x, xOff, m, seg, n, k, y, yOff, r0, r1);
        } else if (m <= GroupKernels.MAX_TOKENS && dt == DType.BF16) {
            GroupKernels.rows(x, xOff, m, seg, n, k, y, yOff, r0, r1);
        } else {
            DenseKernels.batched(x, xOff, m, seg, dt, n, k, y, yOff, r0, r1);
        }
    }

    /** Up to this many tokens, BF16 weights are widened in registers and streamed once (see {@link DenseKernels#fewTokens}). */
    static final int FEW_TOKENS = 4;

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
                    case Q8_0, Q4_0, Q4_K, MXFP4 -> throw new IllegalArgumentException(weight + ": rmsnorm weights must not be quantized");
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
        return DenseKernels.dot1(a, aOff, b, bOff, n, F.loopBound(n), scratch().acc);
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

    // ---------------------------------------------------------------------------------------
    // attention (argument checks; the heads are computed in AttentionKernels)
    // ---------------------------------------------------------------------------------------

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
        AttentionKernels.attention(q, qOff, keys, kOff, values, vOff, null, kvStrideK, kvStrideV, nKeys, nHeads,
                nKvHeads, headDimK, headDimV, scale, out, outOff, scores, pool);
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
        AttentionKernels.attention(q, qOff, keys, 0, values, 0, rows, kvStrideK, kvStrideV, nKeys, nHeads,
                nKvHeads, headDimK, headDimV, scale, out, outOff, scores, pool);
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
