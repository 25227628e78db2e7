package io.epserve.tensor;

import java.util.Arrays;
import java.util.Objects;

/**
 * Attention of one query token over cached rows, for the cases {@link Kernels#attentionRows}
 * does not cover: keys and values stored as bfloat16 ({@code short[]}), and per-head sink
 * logits (gpt-oss: a learned logit per head that joins every softmax's denominator and
 * contributes no value). Key/value head g's rows are read once into float scratch and shared by
 * the query heads of its group; the dot products and the weighted sums use {@link Kernels#dot}
 * and {@link Kernels#axpy}. Heads run on the caller or, for long contexts, in parallel on
 * {@link KernelPool#common()}; each head's result is the same either way.
 *
 * <p>Layout as {@link Kernels#attentionRows}: query head h at {@code q[qOff + h·headDimK]}, key t
 * of kv head g at {@code keys[rows[t]·kvStrideK + g·headDimK]}, values likewise, output head h
 * at {@code out[outOff + h·headDimV]}. {@code sinks} is null or one logit per query head.
 */
public final class RowAttention {
    private RowAttention() {}

    /** Per-thread scratch: one kv head's rows as floats, and a group's scores. */
    private static final class Scratch {
        float[] row = new float[0];
        float[] scores = new float[0];
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** F32 storage. */
    public static void attend(float[] q, int qOff, float[] keys, float[] values, int[] rows, int kvStrideK, int kvStrideV,
                              int nKeys, int nHeads, int nKvHeads, int headDimK, int headDimV, float scale, float[] sinks,
                              float[] out, int outOff) {
        run(q, qOff, keys, null, values, null, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV, scale,
                sinks, out, outOff);
    }

    /** BF16 storage. */
    public static void attend(float[] q, int qOff, short[] keys, short[] values, int[] rows, int kvStrideK, int kvStrideV,
                              int nKeys, int nHeads, int nKvHeads, int headDimK, int headDimV, float scale, float[] sinks,
                              float[] out, int outOff) {
        run(q, qOff, null, keys, null, values, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV, scale,
                sinks, out, outOff);
    }

    private static void run(float[] q, int qOff, float[] kf, short[] kh, float[] vf, short[] vh, int[] rows,
                            int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads, int headDimK, int headDimV,
                            float scale, float[] sinks, float[] out, int outOff) {
        if (nKvHeads <= 0 || nHeads % nKvHeads != 0) {
            throw new IllegalArgumentException("nHeads " + nHeads + " is not a multiple of nKvHeads " + nKvHeads);
        }
        if (sinks != null && sinks.length != nHeads) {
            throw new IllegalArgumentException(sinks.length + " sink logits for " + nHeads + " heads");
        }
        Objects.checkFromIndexSize(qOff, nHeads * headDimK, q.length);
        Objects.checkFromIndexSize(outOff, nHeads * headDimV, out.length);
        KernelPool pool = KernelPool.common();
        long macs = (long) nHeads * nKeys * (headDimK + headDimV);
        if (macs < AttentionKernels.ATTENTION_SERIAL_MACS || pool.threads() == 1 || nHeads == 1) {
            heads(q, qOff, kf, kh, vf, vh, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV, scale, sinks,
                    out, outOff, 0, nHeads);
            return;
        }
        Job j = JOB.get();
        j.q = q; j.qOff = qOff; j.kf = kf; j.kh = kh; j.vf = vf; j.vh = vh; j.rows = rows; j.kvStrideK = kvStrideK;
        j.kvStrideV = kvStrideV; j.nKeys = nKeys; j.nHeads = nHeads; j.nKvHeads = nKvHeads; j.headDimK = headDimK;
        j.headDimV = headDimV; j.scale = scale; j.sinks = sinks; j.out = out; j.outOff = outOff;
        try {
            // whole GQA groups per chunk when that still gives every thread work: a group's heads share each row read
            int group = nHeads / nKvHeads;
            pool.parallelFor(nHeads, nKvHeads >= pool.threads() ? group : 1, j);
        } finally {
            j.q = null; j.kf = null; j.kh = null; j.vf = null; j.vh = null; j.rows = null; j.sinks = null; j.out = null;
        }
    }

    /** The arguments of one call, for the pool's threads (one reusable instance per calling thread). */
    private static final class Job implements KernelPool.Body {
        float[] q; int qOff; float[] kf; short[] kh; float[] vf; short[] vh; int[] rows;
        int kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV; float scale; float[] sinks; float[] out; int outOff;

        @Override
        public void run(int from, int to) {
            heads(q, qOff, kf, kh, vf, vh, rows, kvStrideK, kvStrideV, nKeys, nHeads, nKvHeads, headDimK, headDimV, scale, sinks,
                    out, outOff, from, to);
        }
    }

    private static final ThreadLocal<Job> JOB = ThreadLocal.withInitial(Job::new);

    /** Query heads [h0, h1): each kv head's rows are read once for the heads of its group in the range. */
    private static void heads(float[] q, int qOff, float[] kf, short[] kh, float[] vf, short[] vh, int[] rows,
                              int kvStrideK, int kvStrideV, int nKeys, int nHeads, int nKvHeads, int headDimK, int headDimV,
                              float scale, float[] sinks, float[] out, int outOff, int h0, int h1) {
        int group = nHeads / nKvHeads;
        Scratch sc = SCRATCH.get();
        if (sc.row.length < Math.max(headDimK, headDimV)) {
            sc.row = new float[Math.max(headDimK, headDimV)];
        }
        if (sc.scores.length < group * nKeys) {
            sc.scores = new float[Math.max(group * nKeys, 2 * sc.scores.length)];
        }
        float[] row = sc.row;
        float[] scores = sc.scores;
        for (int g = h0 / group; g * group < h1; g++) {
            int first = Math.max(h0, g * group);
            int last = Math.min(h1, (g + 1) * group);
            int n = last - first;
            for (int t = 0; t < nKeys; t++) {
                load(kf, kh, rows[t] * kvStrideK + g * headDimK, row, headDimK);
                for (int j = 0; j < n; j++) {
                    scores[j * nKeys + t] = Kernels.dot(q, qOff + (first + j) * headDimK, row, 0, headDimK) * scale;
                }
            }
            for (int j = 0; j < n; j++) {
                softmaxWithSink(scores, j * nKeys, nKeys, sinks == null ? Float.NEGATIVE_INFINITY : sinks[first + j]);
                Arrays.fill(out, outOff + (first + j) * headDimV, outOff + (first + j + 1) * headDimV, 0f);
            }
            for (int t = 0; t < nKeys; t++) {
                load(vf, vh, rows[t] * kvStrideV + g * headDimV, row, headDimV);
                for (int j = 0; j < n; j++) {
                    Kernels.axpy(scores[j * nKeys + t], row, 0, out, outOff + (first + j) * headDimV, headDimV);
                }
            }
        }
    }

    private static void load(float[] f, short[] h, int off, float[] dst, int n) {
        if (f != null) {
            System.arraycopy(f, off, dst, 0, n);
        } else {
            Bf16.load(h, off, dst, 0, n);
        }
    }

    /** Softmax of x[off, off+n) whose denominator also holds exp(sink) (no sink: -inf). */
    static void softmaxWithSink(float[] x, int off, int n, float sink) {
        float max = sink;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        float sum = sink == Float.NEGATIVE_INFINITY ? 0f : (float) Math.exp(sink - max);
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (int i = 0; i < n; i++) {
            x[off + i] *= inv;
        }
    }
}
