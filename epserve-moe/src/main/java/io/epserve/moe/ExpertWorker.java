package io.epserve.moe;

import java.util.Arrays;

/**
 * The compute of an expert worker (DESIGN.md §1): runs tokens through the experts it holds and
 * returns one weighted partial sum per token. Stateless between calls; the same object serves the
 * in-process dispatcher and the gRPC worker server.
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
     * Groups the request's (token, expert) pairs by expert, runs each expert once over all its
     * tokens (matrix·matrix), then adds each token's pairs in request order (ascending expert id).
     * Returns {@code [tokens × hidden]}.
     */
    public float[] compute(ExpertRequest req) {
        int h = req.hidden();
        int pairs = req.pairs();
        float[] pairOut = new float[pairs * h];
        int[] count = new int[numExperts + 1];
        for (int p = 0; p < pairs; p++) {
            int e = req.experts()[p];
            if (e < 0 || e >= numExperts) {
                throw new IllegalArgumentException("worker " + name + ": expert " + e + " outside [0, " + numExperts + ")");
            }
            count[e + 1]++;
        }
        for (int e = 0; e < numExperts; e++) {
            count[e + 1] += count[e];
        }
        int[] order = new int[pairs];
        int[] fill = Arrays.copyOf(count, numExperts);
        int[] tokenOf = new int[pairs];
        for (int t = 0; t < req.tokens(); t++) {
            for (int p = req.offsets()[t]; p < req.offsets()[t + 1]; p++) {
                tokenOf[p] = t;
                order[fill[req.experts()[p]]++] = p;
            }
        }
        float[] xs = null;
        float[] ys = null;
        float[] scratch = null;
        for (int e = 0; e < numExperts; e++) {
            int n = count[e + 1] - count[e];
            if (n == 0) {
                continue;
            }
            ExpertWeights w = store.expert(req.layer(), e);
            if (xs == null || xs.length < n * h) {
                xs = new float[n * h];
                ys = new float[n * h];
            }
            if (scratch == null || scratch.length < 2 * n * w.intermediate()) {
                scratch = new float[2 * n * w.intermediate()];
            }
            for (int i = 0; i < n; i++) {
                System.arraycopy(req.x(), tokenOf[order[count[e] + i]] * h, xs, i * h, h);
            }
            SwiGlu.forward(w, xs, 0, n, ys, 0, scratch);
            for (int i = 0; i < n; i++) {
                System.arraycopy(ys, i * h, pairOut, order[count[e] + i] * h, h);
            }
        }
        float[] out = new float[req.tokens() * h];
        for (int t = 0; t < req.tokens(); t++) {
            for (int p = req.offsets()[t]; p < req.offsets()[t + 1]; p++) {
                io.epserve.tensor.Kernels.axpy(req.weights()[p], pairOut, p * h, out, t * h, h);
            }
        }
        return out;
    }
}
