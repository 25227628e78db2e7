package io.epserve.tensor;

import static io.epserve.tensor.QuantizedKernels.matvecQuantized;
import static io.epserve.tensor.VectorKernels.F;
import static io.epserve.tensor.VectorKernels.L;
import static io.epserve.tensor.VectorKernels.ROWS;
import static io.epserve.tensor.VectorKernels.TOKENS;
import static io.epserve.tensor.VectorKernels.at;
import static io.epserve.tensor.VectorKernels.hsum;
import static io.epserve.tensor.VectorKernels.loadBF16;
import static io.epserve.tensor.VectorKernels.loadF16;
import static io.epserve.tensor.VectorKernels.loadF32;
import static io.epserve.tensor.VectorKernels.scratch;
import static io.epserve.tensor.VectorKernels.widen;

import io.epserve.tensor.VectorKernels.Scratch;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;

/**
 * The matmul kernels for float weights (F32, BF16, F16) behind {@link VectorKernels#matmul}, which
 * picks one per call ({@link VectorKernels#rows}): {@link #matvec} for one token,
 * {@link #fewTokens} for two to four tokens of BF16 weights, {@link #batched} otherwise; and the
 * heap dot product {@link #dot1} that quantized matvec, attention and {@link VectorKernels#dot}
 * share. All of them follow the one accumulation scheme described in {@link VectorKernels}.
 */
final class DenseKernels {
    private DenseKernels() {}

    /** The scalar tail of one dot product, after the lane sum. */
    static float tail(float s, float[] x, int xOff, MemorySegment seg, DType dt, long rowElem, int kv, int k) {
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
     * F16 takes two rows per call, not four: four inlined {@link VectorKernels#loadF16} exceed C2's node budget
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

    /**
     * Rows {@code [r0, r1)} of y for 2 ≤ m ≤ {@link VectorKernels#FEW_TOKENS} tokens and BF16 weights, like
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
            Arrays.fill(st, 0, rbN * ss, 0f);
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

    /** One dot product of the accumulation scheme (see {@link VectorKernels}), both operands on the heap. */
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

    static float tailHeap(float s, float[] w, int wOff, float[] x, int x0, int kv, int k) {
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
}
