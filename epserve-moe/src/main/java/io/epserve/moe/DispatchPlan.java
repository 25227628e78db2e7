package io.epserve.moe;

import java.util.Arrays;

/**
 * Dispatch and combine for one layer and one step, in one class because they must agree on the
 * layout (DESIGN.md §3.7). {@link #split} turns a {@link RoutingResult} into one
 * {@link ExpertRequest} per worker under a placement; {@link #combine} adds the workers' partial
 * sums back into token order — workers in ascending index, so the result does not depend on the
 * order in which answers arrive.
 */
public final class DispatchPlan {
    private final int tokens;
    private final int hidden;
    private final ExpertRequest[] requests;
    /** [worker] -> global token index of each of that request's rows. */
    private final int[][] rows;

    private DispatchPlan(int tokens, int hidden, ExpertRequest[] requests, int[][] rows) {
        this.tokens = tokens;
        this.hidden = hidden;
        this.requests = requests;
        this.rows = rows;
    }

    /**
     * Splits a layer's routing over the placement's workers; a worker with no tokens gets a null
     * request. Each expert goes to its primary replica.
     */
    public static DispatchPlan split(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement) {
        int workers = placement.workerCount();
        int k = r.k();
        int tokens = r.tokens();
        ExpertRequest[] requests = new ExpertRequest[workers];
        int[][] rows = new int[workers][];
        int[] slots = new int[k];
        for (int w = 0; w < workers; w++) {
            int[] tokenRows = new int[tokens];
            int[] offsets = new int[tokens + 1];
            int[] experts = new int[tokens * k];
            float[] weights = new float[tokens * k];
            int n = 0;
            int pairs = 0;
            for (int t = 0; t < tokens; t++) {
                int found = 0;
                for (int j = 0; j < k; j++) {
                    if (placement.primary(layer, r.expert(t, j)) == w) {
                        slots[found++] = j;
                    }
                }
                if (found == 0) {
                    continue;
                }
                sortByExpert(r, t, slots, found);
                tokenRows[n] = t;
                offsets[n] = pairs;
                for (int i = 0; i < found; i++) {
                    experts[pairs] = r.expert(t, slots[i]);
                    weights[pairs] = r.weight(t, slots[i]);
                    pairs++;
                }
                n++;
            }
            if (n == 0) {
                continue;
            }
            offsets[n] = pairs;
            float[] xs = new float[n * hidden];
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, tokenRows[i] * hidden, xs, i * hidden, hidden);
            }
            rows[w] = Arrays.copyOf(tokenRows, n);
            requests[w] = new ExpertRequest(layer, n, hidden, xs, Arrays.copyOf(offsets, n + 1),
                    Arrays.copyOf(experts, pairs), Arrays.copyOf(weights, pairs));
        }
        return new DispatchPlan(tokens, hidden, requests, rows);
    }

    private static void sortByExpert(RoutingResult r, int t, int[] slots, int n) {
        for (int a = 1; a < n; a++) {
            int s = slots[a];
            int b = a - 1;
            while (b >= 0 && r.expert(t, slots[b]) > r.expert(t, s)) {
                slots[b + 1] = slots[b];
                b--;
            }
            slots[b + 1] = s;
        }
    }

    /** The request for worker w, or null when none of this step's tokens go there. */
    public ExpertRequest request(int worker) {
        return requests[worker];
    }

    public int workers() {
        return requests.length;
    }

    /** {@code out[t] = Σ_w partial[w][row of t]}, workers in ascending index; overwrites out. */
    public void combine(float[][] partials, float[] out) {
        Arrays.fill(out, 0, tokens * hidden, 0f);
        for (int w = 0; w < requests.length; w++) {
            if (requests[w] == null) {
                continue;
            }
            float[] p = partials[w];
            if (p == null || p.length < rows[w].length * hidden) {
                throw new IllegalStateException("missing partial sums of worker " + w);
            }
            for (int i = 0; i < rows[w].length; i++) {
                io.epserve.tensor.Kernels.axpy(1f, p, i * hidden, out, rows[w][i] * hidden, hidden);
            }
        }
    }
}
