package io.epserve.moe;

import io.epserve.tensor.Kernels;
import java.util.Arrays;

/**
 * Dispatch and combine for one layer and one step, in one class because they must agree on the
 * layout (DESIGN.md §3.7). {@link #split} turns a {@link RoutingResult} into one
 * {@link ExpertRequest} per worker under a placement; {@link #combine} adds the workers' partial
 * sums back into token order — workers in ascending index, so the result does not depend on the
 * order in which answers arrive.
 *
 * <p>Two lifetimes. {@link #split} returns a plan of its own, immutable once returned, whose
 * requests may be read by other threads (a transport) until their answers are combined.
 * {@link #reusable} returns a plan whose per-worker arrays are refilled by every
 * {@link #refill} and grow to the largest step seen, so steady-state dispatch allocates nothing
 * (DESIGN.md §3.4); what it held before a refill is gone after it. Not thread-safe: one reusable
 * plan per concurrent dispatch.
 * <pre>
 *   worker w:  count[w] tokens      rows[w][i]       global token index of row i
 *              x[w]  [count × hidden]                the rows' hidden states
 *              offsets[w] [count + 1]                pairs of row i: offsets[i] .. offsets[i+1]-1
 *              experts[w], weights[w] [pairs]        ascending expert id per row
 * </pre>
 */
public final class DispatchPlan {
    private final boolean reusable;
    private int layer;
    private int tokens;
    private int hidden;
    private final int[] count;
    private final int[] pairs;
    /** [worker] -> global token index of each of that worker's rows. */
    private final int[][] rows;
    private final int[][] offsets;
    private final int[][] experts;
    private final float[][] weights;
    private final float[][] xs;
    /** split: built with the plan; reusable: built on demand by {@link #request} and dropped by a refill. */
    private final ExpertRequest[] requests;
    /** The step's hidden states (the caller keeps them untouched until the combine): each token's exact-combine grid. */
    private float[] x;
    /** Scratch of {@link #combineExact}: [tokens × hidden] sums on each token's grid. */
    private long[] exactSums = new long[0];
    private int[] slots = new int[0];
    private int[] owner = new int[0];
    /** Scratch of {@link #balanceReplicas}: per expert its pairs, worker and sort order; per worker its load. */
    private int[] expertPairs = new int[0];
    private int[] expertWorker = new int[0];
    private int[] expertOrder = new int[0];
    private double[] workerLoad = new double[0];
    private int[] workerShare = new int[0];
    private int[] pairOrder = new int[0];

    private DispatchPlan(int workers, boolean reusable) {
        this.reusable = reusable;
        this.count = new int[workers];
        this.pairs = new int[workers];
        this.rows = new int[workers][];
        this.offsets = new int[workers][];
        this.experts = new int[workers][];
        this.weights = new float[workers][];
        this.xs = new float[workers][];
        this.requests = new ExpertRequest[workers];
        for (int w = 0; w < workers; w++) {
            rows[w] = new int[0];
            offsets[w] = new int[1];
            experts[w] = new int[0];
            weights[w] = new float[0];
            xs[w] = new float[0];
        }
    }

    /**
     * Splits a layer's routing over the placement's workers; a worker with no tokens gets a null
     * request. Replicas are chosen per token ({@link #chooseReplicas}). The plan and its requests are new objects.
     */
    public static DispatchPlan split(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement) {
        return split(layer, x, hidden, r, placement, false);
    }

    /**
     * As {@link #split(int, float[], int, RoutingResult, ExpertPlacement)}; with
     * {@code exactPartials} (the combine does not depend on the grouping: {@link #combineExact},
     * or F32 partials with at most 2 experts per token) the tokens of replicated experts are
     * spread over their replicas per step ({@link #balanceReplicas}) instead of per token
     * ({@link #chooseReplicas}).
     */
    public static DispatchPlan split(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement,
                                     boolean exactPartials) {
        DispatchPlan p = new DispatchPlan(placement.workerCount(), false);
        p.fill(layer, x, hidden, r, placement, exactPartials);
        for (int w = 0; w < p.requests.length; w++) {
            int n = p.count[w];
            if (n == 0) {
                continue;
            }
            // exact-length arrays of its own, as a request that may travel
            int np = p.pairs[w];
            p.rows[w] = Arrays.copyOf(p.rows[w], n);
            float[] x1 = p.xs[w].length == n * hidden ? p.xs[w] : Arrays.copyOf(p.xs[w], n * hidden);
            p.requests[w] = new ExpertRequest(layer, n, hidden, x1,
                    Arrays.copyOf(p.offsets[w], n + 1), Arrays.copyOf(p.experts[w], np), Arrays.copyOf(p.weights[w], np));
        }
        return p;
    }

    /** An empty plan for {@code workers} workers whose buffers every {@link #refill} reuses. */
    public static DispatchPlan reusable(int workers) {
        return new DispatchPlan(workers, true);
    }

    /**
     * Splits a layer's routing as {@link #split} does, into this plan's buffers (grown when
     * needed); returns this plan. Only for a plan made by {@link #reusable}.
     */
    public DispatchPlan refill(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement) {
        return refill(layer, x, hidden, r, placement, false);
    }

    /** As {@link #refill(int, float[], int, RoutingResult, ExpertPlacement)}, with {@code exactPartials} as in {@link #split(int, float[], int, RoutingResult, ExpertPlacement, boolean)}. */
    public DispatchPlan refill(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement, boolean exactPartials) {
        if (!reusable) {
            throw new IllegalStateException("a plan made by split() is immutable; refill a DispatchPlan.reusable() one");
        }
        if (placement.workerCount() != count.length) {
            throw new IllegalArgumentException("a plan for " + count.length + " workers cannot hold a placement of "
                    + placement.workerCount());
        }
        Arrays.fill(requests, null);
        fill(layer, x, hidden, r, placement, exactPartials);
        return this;
    }

    /** The grouping: per worker, its tokens in ascending order and each token's pairs in ascending expert id. */
    private void fill(int layer, float[] x, int hidden, RoutingResult r, ExpertPlacement placement, boolean exactPartials) {
        int workers = count.length;
        int k = r.k();
        int tokens = r.tokens();
        this.layer = layer;
        this.tokens = tokens;
        this.hidden = hidden;
        this.x = x;
        if (slots.length < k) {
            slots = new int[k];
        }
        int[] slots = this.slots;
        if (owner.length < tokens * k) {
            owner = new int[tokens * k];
        }
        if (exactPartials && hasReplicas(layer, r, placement)) {
            balanceReplicas(layer, r, placement, owner);
        } else {
            chooseReplicas(layer, r, placement, owner);
        }
        for (int w = 0; w < workers; w++) {
            int[] tokenRows = rows[w].length >= tokens ? rows[w] : (rows[w] = new int[tokens]);
            int[] offs = offsets[w].length >= tokens + 1 ? offsets[w] : (offsets[w] = new int[tokens + 1]);
            int[] ex = experts[w].length >= tokens * k ? experts[w] : (experts[w] = new int[tokens * k]);
            float[] wt = weights[w].length >= tokens * k ? weights[w] : (weights[w] = new float[tokens * k]);
            int n = 0;
            int np = 0;
            for (int t = 0; t < tokens; t++) {
                int found = 0;
                for (int j = 0; j < k; j++) {
                    if (owner[t * k + j] == w) {
                        slots[found++] = j;
                    }
                }
                if (found == 0) {
                    continue;
                }
                sortByExpert(r, t, slots, found);
                tokenRows[n] = t;
                offs[n] = np;
                for (int i = 0; i < found; i++) {
                    ex[np] = r.expert(t, slots[i]);
                    wt[np] = r.weight(t, slots[i]);
                    np++;
                }
                n++;
            }
            count[w] = n;
            pairs[w] = np;
            if (n == 0) {
                continue;
            }
            offs[n] = np;
            float[] x1 = xs[w].length >= n * hidden ? xs[w] : (xs[w] = new float[n * hidden]);
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, tokenRows[i] * hidden, x1, i * hidden, hidden);
            }
        }
    }

    /** Whether any expert this step routes to has more than one replica. */
    private static boolean hasReplicas(int layer, RoutingResult r, ExpertPlacement placement) {
        for (int i = 0, n = r.tokens() * r.k(); i < n; i++) {
            if (placement.replicaCount(layer, r.experts()[i]) > 1) {
                return true;
            }
        }
        return false;
    }

    /**
     * The worker that computes each (token, slot) when the choice may depend on the whole step
     * (the combine does not depend on the grouping: {@link ExactCombine}, or at most two experts
     * per token with F32 partials, see below). Experts with one replica go to it; the others are
     * taken by descending pair count (then ascending id), and each of their pairs, in token
     * order, goes to the replica with the fewest pairs so far (then the earliest in its replica
     * list): a hot expert's tokens are split over its replicas so that every worker ends the step
     * with about the same number of (token, expert) pairs. When the placement's {@link ExpertCost}
     * has a fixed part per expert run, the workers' costs are evened instead ({@link #splitByCost}).
     *
     * <p>With float partials and two terms a, b per token the result is still the same function
     * of each token alone: a worker holding both returns {@code fl(fl(0 + a) + b)}; split over
     * two workers, the combine computes {@code fl(fl(0 + a') + b')} in worker order, where a', b'
     * are {@code fl(0 + a)}, {@code fl(0 + b)}: the same bits (IEEE addition is commutative and
     * {@code 0 + x} only turns -0 into +0). With three or more terms only the exact combine makes
     * the grouping irrelevant.
     */
    private void balanceReplicas(int layer, RoutingResult r, ExpertPlacement placement, int[] owner) {
        int experts = placement.numExperts();
        int workers = count.length;
        int k = r.k();
        int n = r.tokens() * k;
        if (expertPairs.length < experts + 1) {
            expertPairs = new int[experts + 1];
            expertWorker = new int[experts];
            expertOrder = new int[experts];
        }
        if (workerLoad.length < workers) {
            workerLoad = new double[workers];
            workerShare = new int[workers];
        }
        if (pairOrder.length < n) {
            pairOrder = new int[n];
        }
        int[] start = expertPairs; // start[e] .. start[e+1]-1: e's pairs in pairOrder
        double[] load = workerLoad; // each worker's cost so far, in pairs
        double fixed = placement.cost().fixedPairs();
        Arrays.fill(start, 0, experts + 1, 0);
        Arrays.fill(load, 0, workers, 0);
        int[] ids = r.experts();
        for (int i = 0; i < n; i++) {
            start[ids[i] + 1]++;
        }
        for (int e = 0; e < experts; e++) {
            start[e + 1] += start[e];
        }
        int[] fillAt = expertWorker; // reused as the fill cursor per expert
        System.arraycopy(start, 0, fillAt, 0, experts);
        for (int i = 0; i < n; i++) {
            pairOrder[fillAt[ids[i]]++] = i;
        }
        // experts with one replica first: their load is fixed
        int sorted = 0;
        for (int e = 0; e < experts; e++) {
            int pairs = start[e + 1] - start[e];
            if (pairs == 0) {
                continue;
            }
            if (placement.replicaCount(layer, e) == 1) {
                int w = placement.primary(layer, e);
                load[w] += pairs + fixed;
                for (int i = start[e]; i < start[e + 1]; i++) {
                    owner[pairOrder[i]] = w;
                }
            } else {
                expertOrder[sorted++] = e;
            }
        }
        // descending pair count, then ascending id (insertion sort: a layer has few experts in use)
        for (int a = 1; a < sorted; a++) {
            int e = expertOrder[a];
            int pe = start[e + 1] - start[e];
            int b = a - 1;
            while (b >= 0 && (start[expertOrder[b] + 1] - start[expertOrder[b]] < pe
                    || (start[expertOrder[b] + 1] - start[expertOrder[b]] == pe && expertOrder[b] > e))) {
                expertOrder[b + 1] = expertOrder[b];
                b--;
            }
            expertOrder[b + 1] = e;
        }
        if (fixed > 0) {
            splitByCost(layer, placement, owner, sorted, fixed);
            return;
        }
        for (int s = 0; s < sorted; s++) {
            int e = expertOrder[s];
            int replicas = placement.replicaCount(layer, e);
            for (int i = start[e]; i < start[e + 1]; i++) {
                int best = placement.replica(layer, e, 0);
                for (int j = 1; j < replicas; j++) {
                    int w = placement.replica(layer, e, j);
                    if (load[w] < load[best]) {
                        best = w;
                    }
                }
                owner[pairOrder[i]] = best;
                load[best]++;
            }
        }
    }

    /**
     * The split of the replicated experts ({@code expertOrder[0, sorted)}, busiest first) when
     * every expert a worker runs costs it {@code fixed} pairs more: each goes whole to its least
     * busy replica (longest first), then, expert by expert, pairs move from its busiest holder to
     * its cheapest other replica while that lowers the busier of the two, the fixed part of a
     * replica that starts included. Pair by pair, a replica would start whenever its worker is
     * behind by more than the fixed part, so with workers level at the start every expert would
     * run everywhere. Each expert's pairs go, in token order, to its replicas in replica order.
     */
    private void splitByCost(int layer, ExpertPlacement placement, int[] owner, int sorted, double fixed) {
        int[] start = expertPairs;
        double[] load = workerLoad;
        int[] holder = expertWorker; // [sorted index] -> the worker given the whole expert
        int[] share = workerShare;
        for (int s = 0; s < sorted; s++) {
            int e = expertOrder[s];
            int best = placement.replica(layer, e, 0);
            for (int j = 1; j < placement.replicaCount(layer, e); j++) {
                int w = placement.replica(layer, e, j);
                if (load[w] < load[best]) {
                    best = w;
                }
            }
            holder[s] = best;
            load[best] += start[e + 1] - start[e] + fixed;
        }
        for (int s = 0; s < sorted; s++) {
            int e = expertOrder[s];
            int replicas = placement.replicaCount(layer, e);
            for (int j = 0; j < replicas; j++) {
                share[placement.replica(layer, e, j)] = 0;
            }
            share[holder[s]] = start[e + 1] - start[e];
            for (int move = 0; move < 2 * replicas; move++) {
                int from = -1;
                for (int j = 0; j < replicas; j++) {
                    int w = placement.replica(layer, e, j);
                    if (share[w] > 0 && (from < 0 || load[w] > load[from])) {
                        from = w;
                    }
                }
                int to = -1;
                double toCost = 0;
                for (int j = 0; j < replicas; j++) {
                    int w = placement.replica(layer, e, j);
                    double c = load[w] + (share[w] > 0 ? 0 : fixed);
                    if (w != from && (to < 0 || c < toCost)) {
                        to = w;
                        toCost = c;
                    }
                }
                int m = to < 0 ? 0 : (int) Math.min(share[from], Math.floor((load[from] - toCost) / 2));
                if (m < 1) {
                    break;
                }
                share[from] -= m;
                load[from] -= m + (share[from] == 0 ? fixed : 0);
                share[to] += m;
                load[to] = toCost + m;
            }
            int i = start[e];
            for (int j = 0; j < replicas; j++) {
                int w = placement.replica(layer, e, j);
                for (int c = 0; c < share[w]; c++) {
                    owner[pairOrder[i++]] = w;
                }
            }
        }
    }

    /**
     * The worker that computes each (token, slot). An expert with one replica goes to it. With
     * several, each token's experts, taken in ascending id, go to the first replica this token
     * does not use yet (else the primary), so a token's experts spread over workers. The choice
     * depends on the token's own routing only, so a token's result does not depend on its batch.
     */
    private static void chooseReplicas(int layer, RoutingResult r, ExpertPlacement placement, int[] owner) {
        int k = r.k();
        for (int t = 0; t < r.tokens(); t++) {
            for (int j = 0; j < k; j++) {
                owner[t * k + j] = -1;
            }
            for (int n = 0; n < k; n++) {
                // the unassigned slot with the smallest expert id
                int j = -1;
                for (int s = 0; s < k; s++) {
                    if (owner[t * k + s] == -1 && (j < 0 || r.expert(t, s) < r.expert(t, j))) {
                        j = s;
                    }
                }
                int e = r.expert(t, j);
                int replicas = placement.replicaCount(layer, e);
                int chosen = placement.replica(layer, e, 0);
                for (int i = 0; i < replicas && replicas > 1; i++) {
                    int w = placement.replica(layer, e, i);
                    boolean used = false;
                    for (int s = 0; s < k; s++) {
                        used |= owner[t * k + s] == w;
                    }
                    if (!used) {
                        chosen = w;
                        break;
                    }
                }
                owner[t * k + j] = chosen;
            }
        }
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

    /**
     * The request for worker w, or null when none of this step's tokens go there. For a reusable
     * plan it is a view of the plan's buffers, valid until the next refill.
     */
    public ExpertRequest request(int worker) {
        ExpertRequest q = requests[worker];
        if (q == null && reusable && count[worker] > 0) {
            q = new ExpertRequest(layer, count[worker], hidden, xs[worker], offsets[worker], experts[worker], weights[worker]);
            requests[worker] = q;
        }
        return q;
    }

    public int workers() {
        return requests.length;
    }

    public int layer() {
        return layer;
    }

    /** Tokens of the step (of the routing this plan split). */
    public int tokens() {
        return tokens;
    }

    public int hidden() {
        return hidden;
    }

    /** Tokens sent to worker w (0: no request). */
    public int tokens(int worker) {
        return count[worker];
    }

    // The buffers of worker w, for the in-process workers (no request object needed).

    int[] rows(int worker) {
        return rows[worker];
    }

    float[] x(int worker) {
        return xs[worker];
    }

    int[] offsets(int worker) {
        return offsets[worker];
    }

    int[] experts(int worker) {
        return experts[worker];
    }

    float[] weights(int worker) {
        return weights[worker];
    }

    /**
     * {@code out[t] = Σ_w partial[w][row of t]} for exact partials ({@link ExactCombine}: integers
     * on each token's grid): the sums are exact, so neither the grouping of a token's experts on
     * workers nor the worker order matters. Overwrites out.
     */
    public void combineExact(long[][] partials, float[] out) {
        int n = tokens * hidden;
        if (exactSums.length < n) {
            exactSums = new long[n];
        }
        long[] acc = exactSums;
        Arrays.fill(acc, 0, n, 0L);
        for (int w = 0; w < count.length; w++) {
            int c = count[w];
            if (c == 0) {
                continue;
            }
            long[] p = partials[w];
            if (p == null || p.length < c * hidden) {
                throw new IllegalStateException("missing partial sums of worker " + w);
            }
            int[] rw = rows[w];
            for (int i = 0; i < c; i++) {
                int src = i * hidden;
                int dst = rw[i] * hidden;
                for (int j = 0; j < hidden; j++) {
                    acc[dst + j] += p[src + j];
                }
            }
        }
        for (int t = 0; t < tokens; t++) {
            ExactCombine.toFloat(acc, t * hidden, hidden, ExactCombine.gridExponent(x, t * hidden, hidden), out, t * hidden);
        }
    }

    /** {@code out[t] = Σ_w partial[w][row of t]}, workers in ascending index; overwrites out. */
    public void combine(float[][] partials, float[] out) {
        Arrays.fill(out, 0, tokens * hidden, 0f);
        for (int w = 0; w < count.length; w++) {
            int n = count[w];
            if (n == 0) {
                continue;
            }
            float[] p = partials[w];
            if (p == null || p.length < n * hidden) {
                throw new IllegalStateException("missing partial sums of worker " + w);
            }
            int[] rw = rows[w];
            for (int i = 0; i < n; i++) {
                Kernels.axpy(1f, p, i * hidden, out, rw[i] * hidden, hidden);
            }
        }
    }
}
