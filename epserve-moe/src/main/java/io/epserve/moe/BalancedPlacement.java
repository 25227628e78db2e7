package io.epserve.moe;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The {@link ExpertPlacement.Policy#BALANCED} policy: a pure function from an observed
 * {@link ExpertLoad}, the workers and a slot budget to a placement, after DeepSeek's EPLB
 * ({@code eplb.py}: replicate the hottest experts, then pack replicas onto devices; hierarchical
 * by node when the devices are grouped). Per sparse layer:
 * <ol>
 *   <li><b>Slots.</b> Every worker holds at most {@code ceil(E/W) + R} experts of the layer, R =
 *       the redundant slots per worker ({@code --redundant-experts}).</li>
 *   <li><b>Replica counts.</b> Each expert starts with one replica; each free slot goes to the
 *       expert with the highest load per replica (at most one replica per worker), as EPLB's
 *       {@code replicate_experts} does.</li>
 *   <li><b>Packing.</b> Replicas, heaviest first (load / replicas, as the dispatcher splits an
 *       expert's tokens over its replicas), go to the least loaded worker with a free slot that
 *       does not hold that expert yet (longest-processing-time first); then replicas are moved or
 *       swapped off the busiest worker while that lowers its load (a local search LPT alone
 *       misses on small cases).</li>
 * </ol>
 * What is packed is a replica's <em>cost</em> ({@link ExpertCost}): its tokens, plus, when the
 * cost model has one, the fixed part of running an expert in each step it gets tokens. A worker's
 * time follows that cost, not its tokens alone: every replica costs its worker a fixed part, so
 * a replica that evens out the tokens can leave the busiest worker as slow as before. With
 * {@link ExpertCost#PAIRS} the cost is the tokens.
 * <b>Hierarchical</b> (a host label per worker): experts are cut into as many contiguous groups
 * as there are hosts, groups are packed onto hosts by load (each host within its slots), and the
 * flat policy then places each host's experts on that host's workers only, so every replica of a
 * group stays on one host and a token's traffic stays there as far as the router allows. Where
 * the groups cannot be cut evenly or do not fit a host, the flat policy is used instead.
 *
 * <p>Deterministic: ties go to the lower expert id, then the lower worker index; the same input
 * gives the same placement.
 */
public final class BalancedPlacement {
    private BalancedPlacement() {}

    /** Cap on local-search moves per packing: each strictly lowers the busiest worker's load. */
    private static final int MAX_MOVES = 1_000;
    /** Replica-count variants tried per layer (prefixes of the greedy extra-replica order). */
    private static final int MAX_REPLICA_TRIES = 12;
    /** Layers of at most this many experts (on one host) also try alternatives to the greedy replica choice. */
    private static final int SMALL_LAYER = 32;

    /**
     * The balanced placement of every sparse layer of {@code load} (flat: no host grouping).
     *
     * @param redundantSlots extra expert slots per worker and layer beyond {@code ceil(E/W)}
     */
    public static ExpertPlacement place(ExpertLoad load, List<String> workers, int redundantSlots, long epoch) {
        return place(load, workers, null, redundantSlots, epoch);
    }

    /**
     * As {@link #place(ExpertLoad, List, int, long)}, hierarchical when {@code hosts} (one label
     * per worker, null for none) names more than one host.
     */
    public static ExpertPlacement place(ExpertLoad load, List<String> workers, List<String> hosts, int redundantSlots, long epoch) {
        return place(load, workers, hosts, redundantSlots, epoch, ExpertCost.PAIRS);
    }

    /**
     * As {@link #place(ExpertLoad, List, List, int, long)}, packing {@code cost} instead of pairs
     * alone: a replica of expert x on a worker weighs {@link ExpertCost#replica}{@code (tokens_x /
     * replicas_x, steps)}, so an extra replica is placed only where it lowers the busiest
     * worker's cost by more than the fixed part it adds. The placement carries the cost, and the
     * dispatcher splits replicated experts' tokens by it. {@link ExpertCost#PAIRS}, or a load
     * whose step count is unknown, packs pairs alone.
     */
    public static ExpertPlacement place(ExpertLoad load, List<String> workers, List<String> hosts, int redundantSlots, long epoch,
                                        ExpertCost cost) {
        if (workers.isEmpty()) {
            throw new IllegalArgumentException("a placement needs at least one worker");
        }
        if (redundantSlots < 0) {
            throw new IllegalArgumentException("redundant expert slots must be 0 or more, got " + redundantSlots);
        }
        if (hosts != null && hosts.size() != workers.size()) {
            throw new IllegalArgumentException(hosts.size() + " host labels for " + workers.size() + " workers");
        }
        int w = workers.size();
        int e = load.numExperts();
        int slots = (e + w - 1) / w + redundantSlots;
        boolean[] sparse = load.sparseLayers();
        int[][][] replicas = new int[sparse.length][][];
        for (int l = 0; l < sparse.length; l++) {
            if (!sparse[l]) {
                continue;
            }
            double[] layerLoad = new double[e];
            for (int x = 0; x < e; x++) {
                layerLoad[x] = load.tokens(l, x);
            }
            Weights weights = new Weights(layerLoad, cost, load.steps());
            replicas[l] = hosts == null ? null : hierarchical(weights, hosts, slots);
            if (replicas[l] == null) {
                replicas[l] = new int[e][];
                pack(weights, range(e), range(w), slots, replicas[l]);
            }
        }
        return ExpertPlacement.of(sparse, e, workers, ExpertPlacement.Policy.BALANCED, replicas, epoch).withCost(cost);
    }

    /**
     * What one replica weighs: expert x's tokens over its replicas, through the cost model. With
     * {@link ExpertCost#PAIRS} exactly {@code tokens / replicas}.
     */
    record Weights(double[] load, ExpertCost cost, long steps) {
        /** Weight of one replica of expert {@code x} (global id) when it has {@code replicas} of them. */
        double of(int x, int replicas) {
            return cost.replica(load[x] / replicas, steps);
        }
    }

    /** Groups to hosts, then the flat policy per host; null when the groups cannot be kept on one host each. */
    private static int[][] hierarchical(Weights weights, List<String> hosts, int slots) {
        Map<String, List<Integer>> byHost = new LinkedHashMap<>();
        for (int i = 0; i < hosts.size(); i++) {
            byHost.computeIfAbsent(hosts.get(i), k -> new ArrayList<>()).add(i);
        }
        int h = byHost.size();
        int e = weights.load().length;
        if (h < 2 || e % h != 0) {
            return null;
        }
        List<int[]> hostWorkers = byHost.values().stream().map(l -> l.stream().mapToInt(Integer::intValue).toArray()).toList();
        int groupSize = e / h;
        double[] groupLoad = new double[h];
        for (int x = 0; x < e; x++) {
            groupLoad[x / groupSize] += weights.of(x, 1);
        }
        Integer[] order = sortedDescending(groupLoad);
        double[] hostLoad = new double[h];
        int[] hostExperts = new int[h];
        List<List<Integer>> groupsOn = new ArrayList<>();
        for (int i = 0; i < h; i++) {
            groupsOn.add(new ArrayList<>());
        }
        for (int g : order) {
            int best = -1;
            for (int i = 0; i < h; i++) {
                if (hostExperts[i] + groupSize > hostWorkers.get(i).length * slots) {
                    continue;
                }
                // least loaded per worker, so a host with more workers takes more load
                if (best < 0 || hostLoad[i] / hostWorkers.get(i).length < hostLoad[best] / hostWorkers.get(best).length) {
                    best = i;
                }
            }
            if (best < 0) {
                return null;
            }
            hostLoad[best] += groupLoad[g];
            hostExperts[best] += groupSize;
            groupsOn.get(best).add(g);
        }
        int[][] replicas = new int[e][];
        for (int i = 0; i < h; i++) {
            List<Integer> groups = groupsOn.get(i);
            groups.sort(null);
            int[] experts = new int[groups.size() * groupSize];
            int n = 0;
            for (int g : groups) {
                for (int x = 0; x < groupSize; x++) {
                    experts[n++] = g * groupSize + x;
                }
            }
            if (experts.length > 0) {
                pack(weights, experts, hostWorkers.get(i), slots, replicas);
            }
        }
        return replicas;
    }

    /**
     * Places {@code experts} (global ids) on {@code workers} (global indices), at most
     * {@code slots} per worker; writes {@code out[expert]}.
     */
    static void pack(Weights weights, int[] experts, int[] workers, int slots, int[][] out) {
        double[] load = weights.load();
        int n = experts.length;
        int w = workers.length;
        if ((long) w * slots < n) {
            throw new IllegalArgumentException(n + " experts do not fit " + w + " workers of " + slots + " slots");
        }
        // the order in which free slots go to experts: highest load per replica first
        int free = (int) Math.min((long) w * slots - n, (long) n * (w - 1));
        int[] count = new int[n];
        Arrays.fill(count, 1);
        int[] extra = new int[free];
        int extras = 0;
        for (; extras < free; extras++) {
            int best = -1;
            for (int i = 0; i < n; i++) {
                if (count[i] < w && (best < 0 || load[experts[i]] * count[best] > load[experts[best]] * count[i])) {
                    best = i;
                }
            }
            if (best < 0 || load[experts[best]] == 0) {
                break; // no expert gains from another replica
            }
            count[best]++;
            extra[extras] = best;
        }
        // Using every free slot is not always best (an even split can pack worse than fewer,
        // larger replicas): pack with the first m extra replicas for a spread of m, keep the best.
        // On small layers also try every other expert for the last of those extra replicas: the
        // greedy order is not always the one that packs best.
        int[][] holders = null;
        double bestMax = Double.MAX_VALUE;
        int tries = Math.min(extras + 1, MAX_REPLICA_TRIES);
        for (int t = tries - 1; t >= 0; t--) {
            int m = tries == 1 ? 0 : (int) ((long) t * extras / (tries - 1));
            for (int alt = -1; alt < (m > 0 && n <= SMALL_LAYER ? n : 0); alt++) {
                Arrays.fill(count, 1);
                for (int i = 0; i < m; i++) {
                    count[i == m - 1 && alt >= 0 ? alt : extra[i]]++;
                }
                if (alt >= 0 && (alt == extra[m - 1] || count[alt] > w)) {
                    continue;
                }
                int[][] h = packWith(weights, experts, count, w, slots);
                double max = maxLoad(weights, experts, h, w);
                if (max < bestMax * (1 - 1e-12)) {
                    bestMax = max;
                    holders = h;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            int[] r = new int[holders[i].length];
            for (int j = 0; j < r.length; j++) {
                r[j] = workers[holders[i][j]];
            }
            out[experts[i]] = r;
        }
    }

    /** LPT with these replica counts (fewer where it gets stuck), then the local search. */
    private static int[][] packWith(Weights weights, int[] experts, int[] count, int w, int slots) {
        double[] load = weights.load();
        int n = experts.length;
        int[][] h;
        while ((h = lpt(weights, experts, count, w, slots)) == null) {
            // packing got stuck (the only free slots sit with workers holding that expert): drop
            // the lightest extra replica and pack again; with one replica each it always fits
            int drop = -1;
            for (int i = 0; i < n; i++) {
                if (count[i] > 1 && (drop < 0 || load[experts[i]] * count[drop] < load[experts[drop]] * count[i])) {
                    drop = i;
                }
            }
            count[drop]--;
        }
        improve(weights, experts, h, w, slots);
        return h;
    }

    /** Longest-processing-time-first; holders[i] = local worker indices of expert i's replicas, or null when stuck. */
    private static int[][] lpt(Weights weights, int[] experts, int[] count, int w, int slots) {
        int n = experts.length;
        List<int[]> items = new ArrayList<>(); // {expert index, replica number}
        for (int i = 0; i < n; i++) {
            for (int r = 0; r < count[i]; r++) {
                items.add(new int[] {i, r});
            }
        }
        items.sort((a, b) -> {
            int c = Double.compare(weights.of(experts[b[0]], count[b[0]]), weights.of(experts[a[0]], count[a[0]]));
            return c != 0 ? c : a[0] != b[0] ? Integer.compare(a[0], b[0]) : Integer.compare(a[1], b[1]);
        });
        double[] workerLoad = new double[w];
        int[] used = new int[w];
        int[][] holders = new int[n][];
        int[] filled = new int[n];
        for (int i = 0; i < n; i++) {
            holders[i] = new int[count[i]];
        }
        for (int[] item : items) {
            int i = item[0];
            int best = -1;
            for (int k = 0; k < w; k++) {
                if (used[k] >= slots || contains(holders[i], filled[i], k)) {
                    continue;
                }
                if (best < 0 || workerLoad[k] < workerLoad[best] || (workerLoad[k] == workerLoad[best] && used[k] < used[best])) {
                    best = k;
                }
            }
            if (best < 0) {
                return null;
            }
            holders[i][filled[i]++] = best;
            used[best]++;
            workerLoad[best] += weights.of(experts[i], count[i]);
        }
        return holders;
    }

    /**
     * Moves a replica off the busiest worker, or swaps one with a lighter replica elsewhere,
     * while that lowers the busiest worker's load without raising the other's to it.
     */
    private static void improve(Weights weights, int[] experts, int[][] holders, int w, int slots) {
        int n = experts.length;
        for (int move = 0; move < MAX_MOVES; move++) {
            double[] wl = new double[w];
            int[] used = new int[w];
            for (int i = 0; i < n; i++) {
                for (int k : holders[i]) {
                    wl[k] += share(weights, experts, holders, i);
                    used[k]++;
                }
            }
            int max = 0;
            for (int k = 1; k < w; k++) {
                if (wl[k] > wl[max]) {
                    max = k;
                }
            }
            if (!step(weights, experts, holders, w, slots, wl, used, max)) {
                return;
            }
        }
    }

    /** One improving move or swap off worker {@code max}; false when there is none. */
    private static boolean step(Weights weights, int[] experts, int[][] holders, int w, int slots, double[] wl, int[] used, int max) {
        int n = experts.length;
        double top = wl[max];
        double bestGain = 0;
        int bestI = -1;
        int bestJ = -1;
        int bestTo = -1;
        for (int i = 0; i < n; i++) {
            int ri = indexOf(holders[i], max);
            if (ri < 0) {
                continue;
            }
            double a = share(weights, experts, holders, i);
            if (a == 0) {
                continue;
            }
            for (int k = 0; k < w; k++) {
                if (k == max || indexOf(holders[i], k) >= 0) {
                    continue;
                }
                // move replica of i from max to k
                if (used[k] < slots && wl[k] + a < top) {
                    double gain = top - Math.max(top - a, wl[k] + a);
                    if (gain > bestGain) {
                        bestGain = gain;
                        bestI = i;
                        bestJ = -1;
                        bestTo = k;
                    }
                }
                // swap with a lighter replica j on k that max does not hold
                for (int j = 0; j < n; j++) {
                    if (j == i || indexOf(holders[j], k) < 0 || indexOf(holders[j], max) >= 0) {
                        continue;
                    }
                    double b = share(weights, experts, holders, j);
                    if (b >= a || wl[k] - b + a >= top) {
                        continue;
                    }
                    double gain = top - Math.max(top - a + b, wl[k] - b + a);
                    if (gain > bestGain) {
                        bestGain = gain;
                        bestI = i;
                        bestJ = j;
                        bestTo = k;
                    }
                }
            }
        }
        if (bestI < 0 || bestGain <= top * 1e-12) {
            return false;
        }
        holders[bestI][indexOf(holders[bestI], max)] = bestTo;
        if (bestJ >= 0) {
            holders[bestJ][indexOf(holders[bestJ], bestTo)] = max;
        }
        return true;
    }

    private static double maxLoad(Weights weights, int[] experts, int[][] holders, int w) {
        double[] wl = new double[w];
        for (int i = 0; i < experts.length; i++) {
            for (int k : holders[i]) {
                wl[k] += share(weights, experts, holders, i);
            }
        }
        double max = 0;
        for (double v : wl) {
            max = Math.max(max, v);
        }
        return max;
    }

    private static double share(Weights weights, int[] experts, int[][] holders, int i) {
        return weights.of(experts[i], holders[i].length);
    }

    private static int indexOf(int[] a, int v) {
        for (int i = 0; i < a.length; i++) {
            if (a[i] == v) {
                return i;
            }
        }
        return -1;
    }

    private static boolean contains(int[] a, int n, int v) {
        for (int i = 0; i < n; i++) {
            if (a[i] == v) {
                return true;
            }
        }
        return false;
    }

    private static int[] range(int n) {
        int[] r = new int[n];
        for (int i = 0; i < n; i++) {
            r[i] = i;
        }
        return r;
    }

    private static Integer[] sortedDescending(double[] v) {
        Integer[] order = new Integer[v.length];
        for (int i = 0; i < v.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (a, b) -> v[a] != v[b] ? Double.compare(v[b], v[a]) : Integer.compare(a, b));
        return order;
    }
}
