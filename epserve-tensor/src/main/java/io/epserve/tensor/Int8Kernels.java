package io.epserve.tensor;

import static io.epserve.tensor.VectorKernels.LE;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Matmuls over Q8_0 / Q4_0 / Q4_K weights with 8-bit activations ({@link QuantizedActivations#INT8}):
 * the activations of all m tokens are quantized once per call ({@link Int8Activations}, on the
 * calling thread), then each (token, weight row) is one {@link ScalarKernels#dotInt8}, computed
 * by the native library where it is loaded ({@link NativeKernels}) and otherwise by the Vector API
 * kernels below, which are its portable twin and compute the same bits.
 *
 * <p>Every m takes the same per-token arithmetic (prefill, batched decode and decode alike), so a
 * token's result never depends on its batch. Rows are processed in groups of {@link #ROW_GROUP}
 * with every token of the call run over a group while its weights are in L1/L2.
 *
 * <p>The Vector API twin (256-bit vectors, whatever the preferred width, so that the 8 lanes of
 * the definition are one vector): the 32 weight bytes of a block, read as 16 shorts, give the
 * even bytes ({@code (s << 8) >> 8}) and the odd ones ({@code s >> 8}); 16-bit multiplies by the
 * activations' even and odd bytes and one add give the 16 sums of adjacent pairs (|·| ≤ 32512,
 * no overflow), and the same trick one level up ({@code (i << 16) >> 16} plus {@code i >> 16}
 * over the 8 ints) the 8 sums of 4 consecutive products: exactly the lanes vpmaddubsw + vpmaddwd
 * leave. Where 256-bit vectors are not native, the scalar twin runs instead (same bits, slow).
 */
final class Int8Kernels {
    private Int8Kernels() {}

    static final VectorSpecies<Byte> B32 = ByteVector.SPECIES_256;
    static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    static final VectorSpecies<Float> F8 = FloatVector.SPECIES_256;
    static final VectorSpecies<Float> F4 = FloatVector.SPECIES_128;
    /** Whether the JIT compiles 256-bit vectors here (else the scalar twin computes the same bits). */
    static final boolean VECTOR = FloatVector.SPECIES_PREFERRED.vectorBitSize() >= 256;
    /** Rows per group: all tokens of a call run over one group before the next (its weights stay cached). */
    static final int ROW_GROUP = 16;

    /** Whether {@link QuantizedActivations#INT8} has a kernel for this weight dtype. */
    static boolean handles(DType dt) {
        return dt == DType.Q8_0 || dt == DType.Q4_0 || dt == DType.Q4_K;
    }

    private static final ThreadLocal<Int8Activations> ACTIVATIONS = ThreadLocal.withInitial(Int8Activations::new);

    /** {@code y[i, r] = x[i, :] · w[r, :]} for m tokens (arguments checked by the caller), on the pool. */
    static void matmul(float[] x, int xOff, int m, MemorySegment seg, DType dt, int n, int k, float[] y, int yOff, KernelPool pool) {
        Int8Activations a = ACTIVATIONS.get();
        a.quantize(x, xOff, m, k);
        int chunk = VectorKernels.chunkRows(pool, m, n, k, ROW_GROUP);
        if (chunk >= n) {
            rows(a, m, seg, dt, n, k, y, yOff, 0, n);
            return;
        }
        Job j = JOB.get();
        j.a = a; j.m = m; j.seg = seg; j.dt = dt; j.n = n; j.k = k; j.y = y; j.yOff = yOff;
        try {
            pool.parallelFor(n, chunk, j);
        } finally {
            j.a = null; j.y = null; j.seg = null;
        }
    }

    private static final class Job implements KernelPool.Body {
        Int8Activations a; int m; MemorySegment seg; DType dt; int n; int k; float[] y; int yOff;
        public void run(int r0, int r1) {
            rows(a, m, seg, dt, n, k, y, yOff, r0, r1);
        }
    }
    private static final ThreadLocal<Job> JOB = ThreadLocal.withInitial(Job::new);

    /** Rows {@code [r0, r1)} of y for the m quantized tokens of a. */
    static void rows(Int8Activations a, int m, MemorySegment seg, DType dt, int n, int k, float[] y, int yOff, int r0, int r1) {
        if (NativeKernels.ENABLED) {
            NativeKernels.matmulInt8(a.q, a.d, a.sum, m, k, seg, dt, n, y, yOff, r0, r1);
        } else {
            rowsVector(a, m, k, seg, dt, n, y, yOff, r0, r1);
        }
    }

    /** {@link #rows} in the Vector API (or the scalar twin where 256-bit vectors are not native): the portable path. */
    static void rowsVector(Int8Activations a, int m, int k, MemorySegment seg, DType dt, int n, float[] y, int yOff, int r0, int r1) {
        byte[] q = a.q;
        float[] d = a.d;
        Objects.checkFromIndexSize(0, Math.multiplyExact(m, k), q.length);
        Objects.checkFromIndexSize(0, m * (k / Int8Activations.BLOCK), d.length);
        Objects.checkFromIndexSize(yOff, Math.multiplyExact(m, n), y.length);
        long rowBytes = dt.bytesFor(k);
        if (r0 < 0 || r1 > n || (long) r1 * rowBytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException("rows [" + r0 + ", " + r1 + ") of " + rowBytes + " bytes in a segment of " + seg.byteSize());
        }
        int blocks = k / Int8Activations.BLOCK;
        VectorKernels.Scratch sc = VectorKernels.scratch();
        float[] acc = sc.acc;
        for (int g0 = r0; g0 < r1; g0 += ROW_GROUP) {
            int g1 = Math.min(r1, g0 + ROW_GROUP);
            for (int t = 0; t < m; t++) {
                int qOff = t * k;
                int dOff = t * blocks;
                int yt = yOff + t * n;
                int r = g0;
                if (VECTOR && dt == DType.Q4_K) {
                    for (; r < g1; r++) {
                        float macc = dot1Q4_K(q, qOff, d, a.sum, dOff, seg, r * rowBytes, k / 256, acc, sc.factors);
                        y[yt + r] = hsum8(acc, 0) + macc;
                    }
                }
                if (VECTOR) {
                    for (; r + 2 <= g1; r += 2) {
                        long b0 = r * rowBytes;
                        switch (dt) {
                            case Q8_0 -> dot2Q8_0(q, qOff, d, dOff, seg, b0, rowBytes, blocks, acc);
                            case Q4_0 -> dot2Q4_0(q, qOff, d, dOff, seg, b0, rowBytes, blocks, acc);
                            default -> throw new IllegalArgumentException(dt + " has no int8-activation product");
                        }
                        y[yt + r] = hsum8(acc, 0);
                        y[yt + r + 1] = hsum8(acc, 8);
                    }
                }
                for (; r < g1; r++) {
                    y[yt + r] = ScalarKernels.dotInt8(q, qOff, d, dOff, seg, r * rowBytes, dt, k);
                }
            }
        }
    }

    /** The definition's lane sum over acc[o..o+8). */
    private static float hsum8(float[] a, int o) {
        return ((a[o] + a[o + 1]) + (a[o + 2] + a[o + 3])) + ((a[o + 4] + a[o + 5]) + (a[o + 6] + a[o + 7]));
    }

    // Written out without vector-passing helpers, as QuantizedKernels' kernels are: a helper C2
    // stops inlining would box its vectors on every call.

    /** Two Q8_0 rows (at b0 and b0 + rb) with one token: lane accumulators to acc[0..8) and acc[8..16). */
    private static void dot2Q8_0(byte[] q, int qOff, float[] d, int dOff, MemorySegment seg, long b0, long rb, int blocks, float[] acc) {
        long b1 = b0 + rb;
        FloatVector a0 = FloatVector.zero(F8);
        FloatVector a1 = a0;
        for (int b = 0; b < blocks; b++) {
            long o = (long) b * 34;
            float dx = d[dOff + b];
            FloatVector s0 = FloatVector.broadcast(F8, Quantizer.d(seg, b0 + o) * dx);
            FloatVector s1 = FloatVector.broadcast(F8, Quantizer.d(seg, b1 + o) * dx);
            ShortVector xs = ByteVector.fromArray(B32, q, qOff + 32 * b).reinterpretAsShorts();
            ShortVector xe = xs.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8);
            ShortVector xo = xs.lanewise(VectorOperators.ASHR, 8);
            ShortVector w0 = ByteVector.fromMemorySegment(B32, seg, b0 + o + Quantizer.Q_QS, LE).reinterpretAsShorts();
            ShortVector w1 = ByteVector.fromMemorySegment(B32, seg, b1 + o + Quantizer.Q_QS, LE).reinterpretAsShorts();
            IntVector p0 = w0.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8).mul(xe)
                    .add(w0.lanewise(VectorOperators.ASHR, 8).mul(xo)).reinterpretAsInts();
            IntVector p1 = w1.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8).mul(xe)
                    .add(w1.lanewise(VectorOperators.ASHR, 8).mul(xo)).reinterpretAsInts();
            FloatVector f0 = (FloatVector) p0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(p0.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0);
            FloatVector f1 = (FloatVector) p1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(p1.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0);
            a0 = f0.fma(s0, a0);
            a1 = f1.fma(s1, a1);
        }
        a0.intoArray(acc, 0);
        a1.intoArray(acc, 8);
    }

    /**
     * Two Q4_0 rows with one token, in 128-bit halves: quant byte j holds element j (low nibble)
     * and j + 16 (high), so the low nibbles meet activation bytes 0..15 (lanes 0..3 of the
     * definition) and the high ones bytes 16..31 (lanes 4..7). Lanes to acc[0..8) and acc[8..16).
     */
    private static void dot2Q4_0(byte[] q, int qOff, float[] d, int dOff, MemorySegment seg, long b0, long rb, int blocks, float[] acc) {
        long b1 = b0 + rb;
        FloatVector l0 = FloatVector.zero(F4);
        FloatVector h0 = l0;
        FloatVector l1 = l0;
        FloatVector h1 = l0;
        for (int b = 0; b < blocks; b++) {
            long o = (long) b * 18;
            float dx = d[dOff + b];
            FloatVector s0 = FloatVector.broadcast(F4, Quantizer.d(seg, b0 + o) * dx);
            FloatVector s1 = FloatVector.broadcast(F4, Quantizer.d(seg, b1 + o) * dx);
            ShortVector xl = ByteVector.fromArray(B16, q, qOff + 32 * b).reinterpretAsShorts();
            ShortVector xh = ByteVector.fromArray(B16, q, qOff + 32 * b + 16).reinterpretAsShorts();
            ShortVector xle = xl.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8);
            ShortVector xlo = xl.lanewise(VectorOperators.ASHR, 8);
            ShortVector xhe = xh.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8);
            ShortVector xho = xh.lanewise(VectorOperators.ASHR, 8);
            // Nibbles as shorts: byte pair (2i, 2i+1) of the quants is short i; low nibbles of both
            // bytes at bits 0-3 and 8-11, high nibbles at 4-7 and 12-15.
            ShortVector v0 = ByteVector.fromMemorySegment(B16, seg, b0 + o + Quantizer.Q_QS, LE).reinterpretAsShorts();
            ShortVector v1 = ByteVector.fromMemorySegment(B16, seg, b1 + o + Quantizer.Q_QS, LE).reinterpretAsShorts();
            IntVector pl0 = v0.and((short) 15).sub((short) 8).mul(xle)
                    .add(v0.lanewise(VectorOperators.LSHR, 8).and((short) 15).sub((short) 8).mul(xlo)).reinterpretAsInts();
            IntVector ph0 = v0.lanewise(VectorOperators.LSHR, 4).and((short) 15).sub((short) 8).mul(xhe)
                    .add(v0.lanewise(VectorOperators.LSHR, 12).sub((short) 8).mul(xho)).reinterpretAsInts();
            IntVector pl1 = v1.and((short) 15).sub((short) 8).mul(xle)
                    .add(v1.lanewise(VectorOperators.LSHR, 8).and((short) 15).sub((short) 8).mul(xlo)).reinterpretAsInts();
            IntVector ph1 = v1.lanewise(VectorOperators.LSHR, 4).and((short) 15).sub((short) 8).mul(xhe)
                    .add(v1.lanewise(VectorOperators.LSHR, 12).sub((short) 8).mul(xho)).reinterpretAsInts();
            l0 = ((FloatVector) pl0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(pl0.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0)).fma(s0, l0);
            h0 = ((FloatVector) ph0.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(ph0.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0)).fma(s0, h0);
            l1 = ((FloatVector) pl1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(pl1.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0)).fma(s1, l1);
            h1 = ((FloatVector) ph1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                    .add(ph1.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0)).fma(s1, h1);
        }
        l0.intoArray(acc, 0);
        h0.intoArray(acc, 4);
        l1.intoArray(acc, 8);
        h1.intoArray(acc, 12);
    }

    /**
     * One Q4_K row with one token: per super-block its 8 (scale, min) factors
     * ({@link QuantizedKernels#factorsQ4_K}), then per 32-byte chunk c of quants sub-block 2c (low
     * nibbles, activation block 8·sb + 2c) and 2c + 1 (high nibbles, the next block). Nibbles are
     * unsigned (0..15), so the pair products stay far from overflow. Lane accumulators to
     * acc[0..8); returns the offsets' share (macc of the definition).
     */
    private static float dot1Q4_K(byte[] q, int qOff, float[] d, int[] sum, int dOff, MemorySegment seg, long b0, int superBlocks,
                                  float[] acc, float[] f) {
        FloatVector a0 = FloatVector.zero(F8);
        float macc = 0f;
        for (int sb = 0; sb < superBlocks; sb++) {
            long o = b0 + (long) sb * 144;
            QuantizedKernels.factorsQ4_K(seg, o, f, 0);
            for (int c = 0; c < 4; c++) {
                int bl = 8 * sb + 2 * c;
                float dl = d[dOff + bl];
                float dh = d[dOff + bl + 1];
                ShortVector v = ByteVector.fromMemorySegment(B32, seg, o + Quantizer.K_QS + 32L * c, LE).reinterpretAsShorts();
                ShortVector xl = ByteVector.fromArray(B32, q, qOff + 32 * bl).reinterpretAsShorts();
                ShortVector xh = ByteVector.fromArray(B32, q, qOff + 32 * bl + 32).reinterpretAsShorts();
                IntVector pl = v.and((short) 15).mul(xl.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8))
                        .add(v.lanewise(VectorOperators.LSHR, 8).and((short) 15).mul(xl.lanewise(VectorOperators.ASHR, 8)))
                        .reinterpretAsInts();
                IntVector ph = v.lanewise(VectorOperators.LSHR, 4).and((short) 15)
                        .mul(xh.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 8))
                        .add(v.lanewise(VectorOperators.LSHR, 12).mul(xh.lanewise(VectorOperators.ASHR, 8)))
                        .reinterpretAsInts();
                a0 = ((FloatVector) pl.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                        .add(pl.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0))
                        .fma(FloatVector.broadcast(F8, f[2 * c] * dl), a0);
                macc = Math.fma(f[8 + 2 * c] * dl, (float) sum[dOff + bl], macc);
                a0 = ((FloatVector) ph.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)
                        .add(ph.lanewise(VectorOperators.ASHR, 16)).convert(VectorOperators.I2F, 0))
                        .fma(FloatVector.broadcast(F8, f[2 * c + 1] * dh), a0);
                macc = Math.fma(f[9 + 2 * c] * dh, (float) sum[dOff + bl + 1], macc);
            }
        }
        a0.intoArray(acc, 0);
        return macc;
    }
}
