package io.epserve.moe;

import java.util.Arrays;
import io.epserve.tensor.Kernels;

/**
 * The compute of an expert worker (DESIGN.md §1): runs tokens through the experts it holds and
 * returns one weighted partial sum per token. Stateless between calls; the same object serves the
 * in-process dispatcher and the gRPC worker server, from any number of threads at once. The
 * caller may lend the call its working memory ({@link Scratch}) and the output array, so that
 * steady-state calls allocate nothing (DESIGN.md §3.4).
 */
public final class ExpertWorker {
    private final String name;
    private final ExpertStore store;
    private final int numExperts;

    public ExpertWorker(String name, ExpertStore store, int numExperts) {
        this.name = name;
        this.store = store;
        this.numExperts = numExperts;
    }

    public String name() {
        return name;
    }

    public ExpertStore store() {
        return store;
    }

    /**
     * The working memory of one {@link #compute} at a time: the grouping of pairs by expert, the
     * gathered rows of the largest expert group, its SwiGLU scratch and the per-pair outputs. It
     * grows to the largest request seen and is never shrunk. Not thread-safe: one per concurrent
     * call.
     */
    public static final class Scratch {
        private int[] count = new int[0];
        private int[] fill = new int[0];
        private int[] order = new int[0];
        private int[] tokenOf = new int[0];
        private float[] xs = new float[0];
        private float[] ys = new float[0];
        private float[] swiglu = new float[0];
        private float[] pairOut = new float[0];

        private static int[] ints(int[] a, int size) {
            return a.length >= size ? a : new int[size];
        }

        private static float[] floats(float[] a, int size) {
            return a.length >= size ? a : new float[size];
        }
    }

    /**
     * Groups the request's (token, expert) pairs by expert, runs each expert once over all its
     * tokens (matrix·matrix), then adds each token's pairs in request order (ascending expert id).
     * Returns {@code [tokens × hidden]}, a new array.
     */
    public float[] compute(ExpertRequest req) {
        float[] out = new float[req.tokens() * req.hidden()];
        compute(req, out, new Scratch());
        return out;
    }

    /**
     * {@link #compute(ExpertRequest)} into {@code out} (its first {@code tokens × hidden} floats,
     * overwritten) with the given working memory: allocates nothing once the scratch has grown.
     */
    public void compute(ExpertRequest req, float[] out, Scratch scratch) {
        compute(req.layer(), req.tokens(), req.hidden(), req.x(), req.offsets(), req.experts(), req.weights(), out, scratch);
    }

    /** Worker w's share of a plan, into out. */
    void compute(DispatchPlan plan, int w, float[] out, Scratch scratch) {
        compute(plan.layer(), plan.tokens(w), plan.hidden(), plan.x(w), plan.offsets(w), plan.experts(w), plan.weights(w),
                out, scratch);
    }

    /**
     * The exact form of {@link #compute(ExpertRequest, float[], Scratch)}: each token's partial
     * sum as integers on its {@link ExactCombine} grid (from the token's own row of x), into
     * {@code out[0, tokens × hidden)}, overwritten. Adding several workers' answers for a token
     * gives the same integers however its experts were split.
     */
    public void computeExact(ExpertRequest req, long[] out, Scratch scratch) {
        computeExact(req.layer(), req.tokens(), req.hidden(), req.x(), req.offsets(), req.experts(), req.weights(), out, scratch);
    }

    /** Worker w's share of a plan, exact, into out. */
    void computeExact(DispatchPlan plan, int w, long[] out, Scratch scratch) {
        computeExact(plan.layer(), plan.tokens(w), plan.hidden(), plan.x(w), plan.offsets(w), plan.experts(w), plan.weights(w),
                out, scratch);
    }

    private void computeExact(int layer, int tokens, int h, float[] x, int[] offsets, int[] experts, float[] weights, long[] out,
                              Scratch s) {
        if (out.length < tokens * h) {
            throw new IllegalArgumentException("output of " + out.length + " longs for " + tokens + " tokens × " + h);
        }
        float[] pairOut = expertOutputs(layer, tokens, h, x, offsets, experts, s);
        Arrays.fill(out, 0, tokens * h, 0L);
        for (int t = 0; t < tokens; t++) {
            int grid = ExactCombine.gridExponent(x, t * h, h);
            for (int p = offsets[t]; p < offsets[t + 1]; p++) {
                ExactCombine.accumulate(weights[p], pairOut, p * h, out, t * h, h, grid);
            }
        }
    }

    private void compute(int layer, int tokens, int h, float[] x, int[] offsets, int[] experts, float[] weights, float[] out,
                         Scratch s) {
        if (out.length < tokens * h) {
            throw new IllegalArgumentException("output of " + out.length + " floats for " + tokens + " tokens × " + h);
        }
        float[] pairOut = expertOutputs(layer, tokens, h, x, offsets, experts, s);
        Arrays.fill(out, 0, tokens * h, 0f);
        for (int t = 0; t < tokens; t++) {
            for (int p = offsets[t]; p < offsets[t + 1]; p++) {
                Kernels.axpy(weights[p], pairOut, p * h, out, t * h, h);
            }
        }
    }

    /** Every pair's unweighted expert output, {@code [pairs × hidden]} in the scratch: experts run once each over their tokens. */
    private float[] expertOutputs(int layer, int tokens, int h, float[] x, int[] offsets, int[] experts, Scratch s) {
        int pairs = offsets[tokens];
        int[] count = s.count = Scratch.ints(s.count, numExperts + 1);
        Arrays.fill(count, 0, numExperts + 1, 0);
        for (int p = 0; p < pairs; p++) {
            int e = experts[p];
            if (e < 0 || e >= numExperts) {
                throw new IllegalArgumentException("worker " + name + ": expert " + e + " outside [0, " + numExperts + ")");
            }
            count[e + 1]++;
        }
        int largest = 0;
        for (int e = 0; e < numExperts; e++) {
            largest = Math.max(largest, count[e + 1]);
            count[e + 1] += count[e];
        }
        int[] order = s.order = Scratch.ints(s.order, pairs);
        int[] fill = s.fill = Scratch.ints(s.fill, numExperts);
        System.arraycopy(count, 0, fill, 0, numExperts);
        int[] tokenOf = s.tokenOf = Scratch.ints(s.tokenOf, pairs);
        for (int t = 0; t < tokens; t++) {
            for (int p = offsets[t]; p < offsets[t + 1]; p++) {
                tokenOf[p] = t;
                order[fill[experts[p]]++] = p;
            }
        }
        float[] xs = s.xs = Scratch.floats(s.xs, largest * h);
        float[] ys = s.ys = Scratch.floats(s.ys, largest * h);
        float[] pairOut = s.pairOut = Scratch.floats(s.pairOut, pairs * h);
        for (int e = 0; e < numExperts; e++) {
            int n = count[e + 1] - count[e];
            if (n == 0) {
                continue;
            }
            ExpertWeights w = store.expert(layer, e);
            float[] scratch = s.swiglu = Scratch.floats(s.swiglu, 2 * n * w.intermediate());
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, tokenOf[order[count[e] + i]] * h, xs, i * h, h);
            }
            SwiGlu.forward(w, xs, 0, n, ys, 0, scratch);
            for (int i = 0; i < n; i++) {
                System.arraycopy(ys, i * h, pairOut, order[count[e] + i] * h, h);
            }
        }
        return pairOut;
    }
}
