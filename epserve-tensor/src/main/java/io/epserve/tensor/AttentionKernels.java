package io.epserve.tensor;

import static io.epserve.tensor.DenseKernels.dot1;
import static io.epserve.tensor.DenseKernels.tailHeap;
import static io.epserve.tensor.VectorKernels.F;
import static io.epserve.tensor.VectorKernels.L;
import static io.epserve.tensor.VectorKernels.hsum;
import static io.epserve.tensor.VectorKernels.scratch;
import static io.epserve.tensor.VectorKernels.softmax;

import java.util.Objects;

import io.epserve.tensor.VectorKernels.Scratch;
import jdk.incubator.vector.FloatVector;

/**
 * Attention behind {@link VectorKernels#attention} and {@link VectorKernels#attentionRows}, which
 * check the arguments: heads run on the caller or in parallel on a {@link KernelPool}
 * ({@link AttnJob}), each computed by {@link #attentionHead}.
 */
final class AttentionKernels {
    private AttentionKernels() {}

    /** Below this many multiply-adds (all heads) attention runs on the caller alone. */
    static final long ATTENTION_SERIAL_MACS = 1L << 16;

    /** Both forms; rows == null means key t is row t. Bounds of keys/values checked by the caller. */
    static void attention(float[] q, int qOff, float[] keys, int kOff, float[] values, int vOff, int[] rows,
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
}
