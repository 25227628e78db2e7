package io.epserve.moe;

import java.util.Arrays;

/**
 * Runs the experts in this JVM: groups the tokens by expert, runs each expert once over all of
 * its tokens (matrix·matrix), writes each (token, slot) output to its own row, then combines the
 * rows of each token in ascending expert id. No serialization, no copies of weights.
 */
public final class InProcessDispatcher implements ExpertDispatcher {
    private final ExpertStore store;
    private final int numExperts;

    public InProcessDispatcher(ExpertStore store, int numExperts) {
        this.store = store;
        this.numExperts = numExperts;
    }

    @Override
    public void dispatch(int layer, float[] hidden, int h, RoutingResult r, float[] out) {
        int tokens = r.tokens();
        int k = r.k();
        float[] slotOut = new float[tokens * k * h];
        // Counting sort of (token, slot) pairs by expert.
        int[] count = new int[numExperts + 1];
        for (int i = 0; i < tokens * k; i++) {
            count[r.experts()[i] + 1]++;
        }
        for (int e = 0; e < numExperts; e++) {
            count[e + 1] += count[e];
        }
        int[] order = new int[tokens * k];
        int[] fill = Arrays.copyOf(count, numExperts);
        for (int i = 0; i < tokens * k; i++) {
            order[fill[r.experts()[i]]++] = i;
        }
        float[] xs = null;
        float[] ys = null;
        float[] scratch = null;
        for (int e = 0; e < numExperts; e++) {
            int n = count[e + 1] - count[e];
            if (n == 0) {
                continue;
            }
            ExpertWeights w = store.expert(layer, e);
            if (xs == null || xs.length < n * h) {
                xs = new float[n * h];
                ys = new float[n * h];
            }
            if (scratch == null || scratch.length < 2 * n * w.intermediate()) {
                scratch = new float[2 * n * w.intermediate()];
            }
            for (int i = 0; i < n; i++) {
                int token = order[count[e] + i] / k;
                System.arraycopy(hidden, token * h, xs, i * h, h);
            }
            SwiGlu.forward(w, xs, 0, n, ys, 0, scratch);
            for (int i = 0; i < n; i++) {
                System.arraycopy(ys, i * h, slotOut, order[count[e] + i] * h, h);
            }
        }
        Combine.weightedSum(r, slotOut, h, out);
    }
}
