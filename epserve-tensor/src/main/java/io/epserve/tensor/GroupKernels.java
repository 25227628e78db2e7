package io.epserve.tensor;

import static io.epserve.tensor.VectorKernels.F;
import static io.epserve.tensor.VectorKernels.L;
import static io.epserve.tensor.VectorKernels.hsum;
import static io.epserve.tensor.VectorKernels.loadBF16;
import static io.epserve.tensor.VectorKernels.scratch;

import io.epserve.tensor.VectorKernels.Scratch;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import jdk.incubator.vector.FloatVector;

/**
 * The matmul for BF16 weights and {@link #MIN_TOKENS}..{@link #MAX_TOKENS} tokens (the few tokens
 * each expert gets per step when many sequences decode together): tokens in groups of
 * {@link #GROUP}, each weight vector widened in registers and used at once for the 8 tokens of
 * a group, so the weights stream from memory once per group and nothing is staged.
 *
 * <p>The group's activations are packed once per call, chunk-major: for every chunk of L
 * columns, the 8 tokens' L values side by side ({@code xi[(c / L) · 8L + u · L + j] = x[u, c + j]}),
 * the last group padded with zero tokens. The tile then reads all 8 tokens from one base at
 * constant offsets: 8 separate token streams ran at 60–70% of that speed on a Zen 3 core (more
 * address arithmetic and bounds checks per FMA). One weight load feeds 8 FMAs; the loads of the
 * weights overlap the FMAs instead of running in a widening pass of their own as in
 * {@link DenseKernels#batched}. Measured at 8 tokens, weights streamed from DRAM: 33–42 against
 * 23–35 GFLOP/s staged on one Zen 3 thread, 56–69 against 51–57 on two (harnesses and
 * ExpertBatchBench, BENCHMARKS.md). Each accumulator sees the fma sequence of {@link VectorKernels}'
 * scheme, so the results are bitwise those of {@link DenseKernels#matvec} per token.
 */
final class GroupKernels {
    private GroupKernels() {}

    /** Tokens per group (one register tile: 8 accumulators). */
    static final int GROUP = 8;
    /** The fewest tokens that take a tile of 8 (fewer: {@link DenseKernels#fewTokens}, no padding). */
    static final int MIN_TOKENS = 5;
    /**
     * The largest m sent here: above, staging the widened weights once for all tokens pays (on 2
     * Zen 3 threads, BF16 expert shapes: groups 0.98–1.37× the staged kernel at 6–16 tokens, even
     * at 24, 0.8–0.95× at 32).
     */
    static final int MAX_TOKENS = 24;
    /** Rows per block when a call has several groups: the block's weights stay in L2 across groups. */
    static final int ROW_BLOCK = 32;

    /**
     * Rows {@code [r0, r1)} of {@code y[i, n] = w[n, :] · x[i, :]} for m tokens, BF16 weights of K
     * columns: full groups of 8, then the rest as one more group padded with zero tokens when it
     * has 5 to 7 tokens, else (1 to 4 tokens) by {@link DenseKernels#fewTokens} or
     * {@link DenseKernels#matvec} on the same row block, while its weights are still in L2.
     */
    static void rows(float[] x, int xOff, int m, MemorySegment seg, int n, int k, float[] y, int yOff, int r0, int r1) {
        int kv = F.loopBound(k);
        int rest = m % GROUP;
        int groups = m / GROUP + (rest >= MIN_TOKENS ? 1 : 0);
        int few = m - Math.min(m, groups * GROUP);
        Scratch sc = scratch();
        float[] xi = sc.groups(groups * GROUP * kv);
        for (int g = 0; g < groups; g++) {
            int t0 = g * GROUP;
            pack(x, xOff + t0 * k, k, Math.min(GROUP, m - t0), kv, xi, g * GROUP * kv);
        }
        long rowBytes = 2L * k;
        int block = groups == 1 && few == 0 ? r1 - r0 : ROW_BLOCK;
        for (int b0 = r0; b0 < r1; b0 += block) {
            int b1 = Math.min(r1, b0 + block);
            for (int g = 0; g < groups; g++) {
                int t0 = g * GROUP;
                int tokens = Math.min(GROUP, m - t0);
                int xg = xOff + t0 * k;
                float[] acc = sc.acc;
                for (int r = b0; r < b1; r++) {
                    tile1x8(xi, g * GROUP * kv, seg, r * rowBytes, kv, acc);
                    long e = (long) r * k;
                    for (int u = 0; u < tokens; u++) {
                        y[yOff + (t0 + u) * n + r] = DenseKernels.tail(hsum(acc, u * L), x, xg + u * k, seg, DType.BF16, e, kv, k);
                    }
                }
            }
            if (few > 0) {
                int t0 = groups * GROUP;
                if (few == 1) {
                    DenseKernels.matvec(x, xOff + t0 * k, seg, DType.BF16, k, y, yOff + t0 * n, b0, b1);
                } else {
                    DenseKernels.fewTokens(x, xOff + t0 * k, few, seg, n, k, y, yOff + t0 * n, b0, b1);
                }
            }
        }
    }

    /**
     * Packs {@code tokens} ≤ 8 tokens of x (row stride k, first kv columns) into
     * {@code xi[base + (c / L) · 8L + u · L + j] = x[u, c + j]}; tokens from {@code tokens} to 8 are zero.
     */
    static void pack(float[] x, int xOff, int k, int tokens, int kv, float[] xi, int base) {
        for (int c = 0, d = base; c < kv; c += L, d += GROUP * L) {
            for (int u = 0; u < tokens; u++) {
                System.arraycopy(x, xOff + u * k + c, xi, d + u * L, L);
            }
            if (tokens < GROUP) {
                Arrays.fill(xi, d + tokens * L, d + GROUP * L, 0f);
            }
        }
    }

    /** 1 row × 8 tokens; accumulator of token u at acc[u · L]. */
    private static void tile1x8(float[] xi, int xb, MemorySegment seg, long b, int kv, float[] acc) {
        FloatVector a0 = FloatVector.zero(F);
        FloatVector a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int c = 0; c < kv; c += L, xb += GROUP * L) {
            FloatVector w = loadBF16(seg, b + 2L * c);
            a0 = w.fma(FloatVector.fromArray(F, xi, xb), a0);
            a1 = w.fma(FloatVector.fromArray(F, xi, xb + L), a1);
            a2 = w.fma(FloatVector.fromArray(F, xi, xb + 2 * L), a2);
            a3 = w.fma(FloatVector.fromArray(F, xi, xb + 3 * L), a3);
            a4 = w.fma(FloatVector.fromArray(F, xi, xb + 4 * L), a4);
            a5 = w.fma(FloatVector.fromArray(F, xi, xb + 5 * L), a5);
            a6 = w.fma(FloatVector.fromArray(F, xi, xb + 6 * L), a6);
            a7 = w.fma(FloatVector.fromArray(F, xi, xb + 7 * L), a7);
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
}
