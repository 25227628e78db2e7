package io.epserve.tensor;

import static io.epserve.tensor.DenseKernels.dot1;
import static io.epserve.tensor.VectorKernels.B;
import static io.epserve.tensor.VectorKernels.F;
import static io.epserve.tensor.VectorKernels.I;
import static io.epserve.tensor.VectorKernels.I32_LE;
import static io.epserve.tensor.VectorKernels.I64_LE;
import static io.epserve.tensor.VectorKernels.L;
import static io.epserve.tensor.VectorKernels.LE;
import static io.epserve.tensor.VectorKernels.hsum;
import static io.epserve.tensor.VectorKernels.scratch;

import java.lang.foreign.MemorySegment;

import io.epserve.tensor.VectorKernels.Scratch;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;

/**
 * The kernels for block-quantized weights (Q8_0, Q4_0, Q4_K; layouts in {@link Quantizer}) behind
 * {@link VectorKernels#matmul}: {@link #matvecQuantized} for one token (called by
 * {@link DenseKernels#matvec}) and {@link #widenQuantized}, which fills the float tile of
 * {@link DenseKernels#batched} (through {@link VectorKernels#widen}).
 */
final class QuantizedKernels {
    private QuantizedKernels() {}

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
     * Other widths and odd rows take the one-row loops. Where the native library is usable
     * ({@link NativeKernels}), Q8_0, Q4_0 and Q4_K go there instead: same bits, faster.
     */
    static void matvecQuantized(float[] x, int xOff, MemorySegment seg, DType dt, int k, float[] y, int yOff, int r0, int r1) {
        if (NativeKernels.handles(dt)) {
            NativeKernels.matvec(x, xOff, seg, dt, k, y, yOff, r0, r1);
        } else {
            matvecVector(x, xOff, seg, dt, k, y, yOff, r0, r1);
        }
    }

    /** {@link #matvecQuantized} in the Vector API: the portable path, and the reference of the native one. */
    static void matvecVector(float[] x, int xOff, MemorySegment seg, DType dt, int k, float[] y, int yOff, int r0, int r1) {
        long rowBytes = dt.bytesFor(k);
        Scratch sc = scratch();
        float[] acc = sc.acc;
        if (B == null || dt == DType.MXFP4) {
            // Narrow vectors (4 lanes), and MXFP4 (its blocks have no vector kernel yet): decode each
            // row to the heap (same exact values), then the F32 dot.
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
        if (B == null || dt == DType.MXFP4) {
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
}
