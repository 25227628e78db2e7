package io.epserve.moe;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.HashSet;
import java.util.Objects;
import java.util.stream.IntStream;

/**
 * Which worker holds which experts, per sparse layer: a pure function of the layer set, the
 * expert count, the worker list and the policy (DESIGN.md §3.8). A <em>logical</em> expert has one
 * or more <em>physical replicas</em>, each on one worker; the first replica is the primary.
 * Placements are values: a new placement is a new object with a higher {@link #epoch()}.
 *
 * <p>{@link #localIndex} is vLLM's expert_map: the global → local id on one worker, with
 * {@link #NOT_HERE} for experts the worker does not hold.
 */
public final class ExpertPlacement {
    public static final int NOT_HERE = -1;

    /** How logical experts are spread over workers. */
    public enum Policy {
        /** Worker w holds experts [w·E/W, (w+1)·E/W): neighbours together (DeepSeek's EP layout). */
        CONTIGUOUS,
        /** Expert e lives on worker e mod W. */
        ROUND_ROBIN,
        /**
         * Every worker holds every expert (replicas; primary e mod W), and dispatch spreads each
         * token's experts over different workers (and, when the combine is exact, gives each
         * expert with all its tokens to one replica per step: see {@code DispatchPlan}): balanced
         * compute at the memory cost of data parallelism — for small models or hot experts.
         */
        REPLICATED,
        /**
         * From an observed {@link ExpertLoad}: hot experts get extra replicas within a per-worker
         * slot budget, and replicas are packed so that the busiest worker's load is as small as
         * the policy can make it ({@link BalancedPlacement}). Without a load: the uniform load.
         */
        BALANCED
    }

    private final long epoch;
    private final int numExperts;
    private final List<String> workers;
    private final Policy policy;
    private final boolean[] sparse;
    /** [layer][expert] -> worker indices of its replicas (primary first); null for dense layers. */
    private final int[][][] replicas;
    /** [worker][layer][expert] -> local index or NOT_HERE. */
    private final int[][][] local;
    /** The cost model the replicas were packed for, by which the dispatcher splits a replicated expert's tokens. */
    private final ExpertCost cost;

    private ExpertPlacement(long epoch, int numExperts, List<String> workers, Policy policy, boolean[] sparse, int[][][] replicas) {
        this(epoch, numExperts, workers, policy, sparse, replicas, ExpertCost.PAIRS);
    }

    private ExpertPlacement(long epoch, int numExperts, List<String> workers, Policy policy, boolean[] sparse, int[][][] replicas,
                            ExpertCost cost) {
        this.cost = Objects.requireNonNull(cost, "cost");
        this.epoch = epoch;
        this.numExperts = numExperts;
        this.workers = List.copyOf(workers);
        this.policy = policy;
        this.sparse = sparse.clone();
        this.replicas = replicas;
        this.local = new int[workers.size()][sparse.length][];
        for (int w = 0; w < workers.size(); w++) {
            for (int l = 0; l < sparse.length; l++) {
                if (!sparse[l]) {
                    continue;
                }
                int[] map = new int[numExperts];
                Arrays.fill(map, NOT_HERE);
                int next = 0;
                for (int e = 0; e < numExperts; e++) {
                    for (int r : replicas[l][e]) {
                        if (r == w) {
                            map[e] = next++;
                        }
                    }
                }
                local[w][l] = map;
            }
        }
    }

    /**
     * Places every expert of every sparse layer on exactly one worker.
     *
     * @param sparseLayers which layers have routed experts
     */
    public static ExpertPlacement create(boolean[] sparseLayers, int numExperts, List<String> workers, Policy policy, long epoch) {
        if (policy == Policy.BALANCED) {
            return BalancedPlacement.place(ExpertLoad.uniform(sparseLayers, numExperts), workers, 0, epoch);
        }
        if (workers.isEmpty()) {
            throw new IllegalArgumentException("a placement needs at least one worker");
        }
        if (numExperts < 1) {
            throw new IllegalArgumentException("a placement needs at least one expert");
        }
        if (new HashSet<>(workers).size() != workers.size()) {
            throw new IllegalArgumentException("duplicate worker in " + workers);
        }
        int w = workers.size();
        int[][][] replicas = new int[sparseLayers.length][][];
        for (int l = 0; l < sparseLayers.length; l++) {
            if (!sparseLayers[l]) {
                continue;
            }
            replicas[l] = new int[numExperts][];
            for (int e = 0; e < numExperts; e++) {
                if (policy == Policy.REPLICATED) {
                    int[] all = new int[w];
                    for (int i = 0; i < w; i++) {
                        all[i] = (e + i) % w;
                    }
                    replicas[l][e] = all;
                    continue;
                }
                int owner = switch (policy) {
                    case CONTIGUOUS -> (int) ((long) e * w / numExperts);
                    case ROUND_ROBIN, REPLICATED, BALANCED -> e % w;
                };
                replicas[l][e] = new int[] {owner};
            }
        }
        return new ExpertPlacement(epoch, numExperts, workers, policy, sparseLayers, replicas);
    }

    /**
     * Places K shards of every expert (as virtual experts {@code e·K + s}, see {@link ExpertShards})
     * so that the shards of one expert sit on K different workers: shard s of expert e goes to
     * worker {@code (owner(e) + s) mod W}, owner(e) as the policy places whole experts.
     */
    public static ExpertPlacement createSharded(boolean[] sparseLayers, int numExperts, int shards, List<String> workers,
                                                Policy policy, long epoch) {
        if (shards == 1) {
            return create(sparseLayers, numExperts, workers, policy, epoch);
        }
        if (shards < 1 || shards > workers.size()) {
            throw new IllegalArgumentException("--expert-shards " + shards + " needs between 1 and " + workers.size()
                    + " workers' worth of shards (one shard per worker)");
        }
        ExpertPlacement whole = create(sparseLayers, numExperts, workers, policy, epoch);
        int w = workers.size();
        int[][][] replicas = new int[sparseLayers.length][][];
        for (int l = 0; l < sparseLayers.length; l++) {
            if (!sparseLayers[l]) {
                continue;
            }
            replicas[l] = new int[numExperts * shards][];
            for (int e = 0; e < numExperts; e++) {
                for (int s = 0; s < shards; s++) {
                    replicas[l][e * shards + s] = new int[] {(whole.primary(l, e) + s) % w};
                }
            }
        }
        return new ExpertPlacement(epoch, numExperts * shards, workers, policy, sparseLayers, replicas);
    }

    /**
     * A placement from explicit replica lists: {@code replicas[layer][expert]} are the worker
     * indices holding that expert (primary first, distinct, at least one), null for dense layers.
     */
    public static ExpertPlacement of(boolean[] sparseLayers, int numExperts, List<String> workers, Policy policy,
                                     int[][][] replicas, long epoch) {
        if (workers.isEmpty()) {
            throw new IllegalArgumentException("a placement needs at least one worker");
        }
        if (new HashSet<>(workers).size() != workers.size()) {
            throw new IllegalArgumentException("duplicate worker in " + workers);
        }
        if (replicas.length != sparseLayers.length) {
            throw new IllegalArgumentException(replicas.length + " layers of replicas for " + sparseLayers.length + " layers");
        }
        int[][][] copy = new int[replicas.length][][];
        for (int l = 0; l < replicas.length; l++) {
            if (!sparseLayers[l]) {
                continue;
            }
            if (replicas[l] == null || replicas[l].length != numExperts) {
                throw new IllegalArgumentException("layer " + l + " needs replicas for " + numExperts + " experts");
            }
            copy[l] = new int[numExperts][];
            for (int e = 0; e < numExperts; e++) {
                int[] r = replicas[l][e];
                if (r == null || r.length == 0) {
                    throw new IllegalArgumentException("expert " + e + " of layer " + l + " has no replica");
                }
                boolean[] seen = new boolean[workers.size()];
                for (int w : r) {
                    if (w < 0 || w >= workers.size() || seen[w]) {
                        throw new IllegalArgumentException("expert " + e + " of layer " + l + ": bad or repeated worker " + w);
                    }
                    seen[w] = true;
                }
                copy[l][e] = r.clone();
            }
        }
        return new ExpertPlacement(epoch, numExperts, workers, policy, sparseLayers, copy);
    }

    /** The same replicas under another epoch. */
    public ExpertPlacement withEpoch(long newEpoch) {
        return new ExpertPlacement(newEpoch, numExperts, workers, policy, sparse, replicas, cost);
    }

    /** The same replicas, split by another cost model ({@link #cost()}). */
    public ExpertPlacement withCost(ExpertCost newCost) {
        return new ExpertPlacement(epoch, numExperts, workers, policy, sparse, replicas, newCost);
    }

    /**
     * The cost model this placement was packed for ({@link ExpertCost#PAIRS} unless a
     * {@link BalancedPlacement} was given one): the dispatcher splits the tokens of a replicated
     * expert over its replicas so that the workers' costs under it, not only their pairs, even out.
     */
    public ExpertCost cost() {
        return cost;
    }

    /**
     * Per worker, the tokens of one layer it computes under {@code load} when every expert's
     * tokens are split evenly over its replicas (what the dispatcher approaches step by step).
     */
    public double[] workerLoads(ExpertLoad load, int layer) {
        return workerCosts(load, layer, ExpertCost.PAIRS);
    }

    /**
     * Balancedness of each sparse layer under {@code load}, in layer order: mean over max of the
     * per-worker loads ({@link #workerLoads}); 1 is perfect, 1/W is everything on one worker; a
     * layer without tokens counts as 1.
     */
    public double[] balancedness(ExpertLoad load) {
        return costBalancedness(load, ExpertCost.PAIRS);
    }

    /**
     * Per worker, its expected cost of one layer over the load's steps under {@code costModel}:
     * each expert's tokens split evenly over its replicas as in {@link #workerLoads}, each replica
     * weighed by {@link ExpertCost#replica}.
     */
    public double[] workerCosts(ExpertLoad load, int layer, ExpertCost costModel) {
        double[] per = new double[workers.size()];
        if (!sparse[layer]) {
            return per;
        }
        for (int e = 0; e < numExperts; e++) {
            double c = costModel.replica((double) load.tokens(layer, e) / replicas[layer][e].length, load.steps());
            for (int w : replicas[layer][e]) {
                per[w] += c;
            }
        }
        return per;
    }

    /**
     * As {@link #balancedness(ExpertLoad)}, of the workers' costs ({@link #workerCosts}) instead
     * of their tokens: the layer's work with one replica per expert (what any placement must do),
     * per worker, over the busiest worker's cost. A replica's fixed part is work a placement
     * adds, so it lowers this figure unless it shortens the busiest worker; two placements'
     * figures under the same load and cost are in the inverse ratio of their busiest workers'
     * time, which is what a step waits for. Equal to the balancedness under {@link ExpertCost#PAIRS}.
     */
    public double[] costBalancedness(ExpertLoad load, ExpertCost costModel) {
        ExpertLoad l = load.forModel(sparse, numExperts);
        double[] out = new double[(int) IntStream.range(0, sparse.length).filter(i -> sparse[i]).count()];
        int i = 0;
        for (int layer = 0; layer < sparse.length; layer++) {
            if (sparse[layer]) {
                double work = 0;
                for (int e = 0; e < numExperts; e++) {
                    work += costModel.replica(l.tokens(layer, e), l.steps());
                }
                double max = 0;
                for (double c : workerCosts(l, layer, costModel)) {
                    max = Math.max(max, c);
                }
                out[i++] = max == 0 ? 1 : work / workers.size() / max;
            }
        }
        return out;
    }

    /** mean / max of per-worker loads; 1 when all are zero. */
    public static double balancedness(double[] perWorker) {
        double max = 0;
        double sum = 0;
        for (double v : perWorker) {
            max = Math.max(max, v);
            sum += v;
        }
        return max == 0 ? 1 : sum / perWorker.length / max;
    }

    /** Whether two placements put the same replicas on the same workers (epochs aside). */
    public boolean sameReplicas(ExpertPlacement o) {
        return o.numExperts == numExperts && o.workers.equals(workers) && Arrays.equals(o.sparse, sparse)
                && Arrays.deepEquals(o.replicas, replicas);
    }

    public long epoch() {
        return epoch;
    }

    public int numExperts() {
        return numExperts;
    }

    public int layers() {
        return sparse.length;
    }

    public boolean isSparse(int layer) {
        return sparse[layer];
    }

    public List<String> workers() {
        return workers;
    }

    public int workerCount() {
        return workers.size();
    }

    public Policy policy() {
        return policy;
    }

    /** Worker indices holding a replica of the expert, primary first. */
    public int[] replicasOf(int layer, int expert) {
        return replicas[layer][expert].clone();
    }

    /** Number of physical replicas of an expert. */
    public int replicaCount(int layer, int expert) {
        return replicas[layer][expert].length;
    }

    /** The i-th replica's worker (0 = primary), without copying. */
    public int replica(int layer, int expert, int i) {
        return replicas[layer][expert][i];
    }

    public int primary(int layer, int expert) {
        return replicas[layer][expert][0];
    }

    public boolean holds(int worker, int layer, int expert) {
        return local[worker][layer] != null && local[worker][layer][expert] != NOT_HERE;
    }

    /** The expert's index among the worker's experts of that layer, or {@link #NOT_HERE}. */
    public int localIndex(int worker, int layer, int expert) {
        return local[worker][layer] == null ? NOT_HERE : local[worker][layer][expert];
    }

    /** The experts of one layer a worker holds, ascending. */
    public int[] expertsOn(int worker, int layer) {
        if (!sparse[layer]) {
            return new int[0];
        }
        int[] map = local[worker][layer];
        return IntStream.range(0, numExperts).filter(e -> map[e] != NOT_HERE).toArray();
    }

    /** Number of (layer, expert) replicas on a worker. */
    public int expertCountOn(int worker) {
        int n = 0;
        for (int l = 0; l < sparse.length; l++) {
            n += expertsOn(worker, l).length;
        }
        return n;
    }

    /** A readable table: one line per worker with its experts per layer, ranges compressed. */
    public List<String> describe() {
        List<String> lines = new ArrayList<>();
        lines.add("placement epoch " + epoch + ", policy " + policy.name().toLowerCase() + ", " + workers.size()
                + " worker(s), " + numExperts + " experts per sparse layer");
        for (int w = 0; w < workers.size(); w++) {
            StringBuilder sb = new StringBuilder();
            String prev = null;
            int from = -1;
            for (int l = 0; l <= sparse.length; l++) {
                String cur = l < sparse.length && sparse[l] ? ranges(expertsOn(w, l)) : null;
                if (cur == null || !cur.equals(prev)) {
                    if (prev != null) {
                        sb.append(sb.isEmpty() ? "" : "; ").append(from == l - 1 ? "layer " + from : "layers " + from + "-" + (l - 1))
                                .append(": ").append(prev);
                    }
                    prev = cur;
                    from = l;
                }
            }
            lines.add("  worker " + w + " (" + workers.get(w) + "): " + expertCountOn(w) + " experts — " + (sb.isEmpty() ? "none" : sb));
        }
        return Collections.unmodifiableList(lines);
    }

    static String ranges(int[] ids) {
        if (ids.length == 0) {
            return "none";
        }
        StringBuilder sb = new StringBuilder();
        int start = ids[0];
        for (int i = 1; i <= ids.length; i++) {
            if (i == ids.length || ids[i] != ids[i - 1] + 1) {
                int end = ids[i - 1];
                sb.append(sb.isEmpty() ? "" : ",").append(start == end ? String.valueOf(start) : start + "-" + end);
                if (i < ids.length) {
                    start = ids[i];
                }
            }
        }
        return sb.toString();
    }
}
