package io.epserve.model.plan;

import io.epserve.model.KvLayout;
import io.epserve.model.KvOptions;
import io.epserve.model.ModelConfig;
import io.epserve.moe.ExpertPlacement;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.IntStream;

/**
 * Plans memory from config.json alone: the bytes of each expert worker and of
 * the frontend for a placement, whether they fit, and the fewest workers that would.
 *
 * <p>A worker holds the routed experts its placement gives it, each replica counted fully. With
 * K expert shards each replica's intermediate dimension is cut in K slices (gate/up rows and the
 * matching down columns) held by K consecutive workers: the replica's own worker w, then w+1, ...
 * modulo W. A frontend holds everything else (embeddings, lm_head, attention, norms, routers,
 * dense layers, shared experts) plus the KV cache. Each process, frontend or worker, is allowed
 * the same fixed overhead ({@link PlanOptions#DEFAULT_OVERHEAD}).
 */
public final class CapacityPlanner {
    private CapacityPlanner() {}

    public static CapacityPlan plan(PlanModel model, PlanOptions o) {
        ModelConfig c = model.config();
        validate(c, o);
        ParameterCount p = model.params();
        long expertBytes = sliceBytes(c, o.expertDtype(), c.moeIntermediate());
        long shardBytes = sliceBytes(c, o.expertDtype(), c.moeIntermediate() / o.expertShards());
        long kvPerToken = kvBytesPerToken(c, o.kvDtype());

        ExpertPlacement placement = ExpertPlacement.create(c.sparseLayers(), c.numExperts(), workerNames(o.workers()), o.policy(), 0);
        List<CapacityPlan.WorkerPlan> workers = workers(c, placement, o.expertShards(), shardBytes, o);
        CapacityPlan.FrontendPlan frontend = frontend(p, o, kvPerToken);
        boolean fits = frontend.fits() && workers.stream().allMatch(CapacityPlan.WorkerPlan::fits);
        int limit = Math.max(o.workers(), c.numExperts() * o.expertShards());
        Integer minExpert = minWorkers(c, o, shardBytes, limit);
        Integer min = frontend.fits() ? minExpert : null;
        return new CapacityPlan(model, o, placement, expertBytes, shardBytes, kvPerToken, List.copyOf(workers), frontend, fits, min,
                minExpert, limit, notes(model, o, kvPerToken));
    }

    private static void validate(ModelConfig c, PlanOptions o) {
        int k = o.expertShards();
        if (c.moeIntermediate() % k != 0) {
            throw new IllegalArgumentException("expert shards " + k + " do not divide the expert intermediate size " + c.moeIntermediate());
        }
        WeightFormat f = o.expertDtype();
        int slice = c.moeIntermediate() / k;
        if (!f.fitsRow(c.hidden()) || !f.fitsRow(slice)) {
            throw new IllegalArgumentException("expert dtype " + f + " stores rows in blocks of " + f.blockSize()
                    + " weights, so hidden_size (" + c.hidden() + ") and the expert's intermediate size"
                    + (k > 1 ? " per shard" : "") + " (" + slice + ") must be multiples of " + f.blockSize());
        }
    }

    /** Bytes of the gate, up and down projections of one expert slice of {@code inter} rows. */
    static long sliceBytes(ModelConfig c, WeightFormat f, int inter) {
        // gate/up: [inter, hidden], quantized along hidden; down: [hidden, inter], quantized along inter
        return 2 * f.matrixBytes(inter, c.hidden()) + f.matrixBytes(c.hidden(), inter);
    }

    /**
     * Keys and values of every layer for one token, as the engine caches them by default
     * ({@link KvLayout} of {@link KvOptions#defaults()}): cached heads × (key head dim + value
     * head dim) for GQA; for MLA the compressed latent, kv_lora_rank + qk_rope_head_dim.
     */
    public static long kvBytesPerToken(ModelConfig c, WeightFormat kvDtype) {
        return KvLayout.of(c, KvOptions.defaults()).elementsPerToken() * c.layers() * kvDtype.blockBytes();
    }

    /** What MLA's compressed cache takes: kv_lora_rank + qk_rope_head_dim per layer (0 without MLA). */
    public static long mlaLatentBytesPerToken(ModelConfig c, WeightFormat kvDtype) {
        if (c.mla() == null) {
            return 0;
        }
        return (long) (c.mla().kvLoraRank() + c.mla().qkRopeDim()) * c.layers() * kvDtype.blockBytes();
    }

    /** What the expanded per-head keys and values would take (the cache without MLA's compression). */
    public static long expandedBytesPerToken(ModelConfig c, WeightFormat kvDtype) {
        return (long) c.cachedKvHeads() * (c.keyHeadDim() + c.valueHeadDim()) * c.layers() * kvDtype.blockBytes();
    }

    static List<String> workerNames(int w) {
        return IntStream.range(0, w).mapToObj(i -> "w" + i).toList();
    }

    private static List<CapacityPlan.WorkerPlan> workers(ModelConfig c, ExpertPlacement placement, int k, long shardBytes, PlanOptions o) {
        int w = placement.workerCount();
        int[] experts = new int[w];
        int[] shards = new int[w];
        List<List<CapacityPlan.LayerHolding>> holdings = new ArrayList<>();
        for (int i = 0; i < w; i++) {
            holdings.add(new ArrayList<>());
        }
        for (int l = 0; l < c.layers(); l++) {
            if (!placement.isSparse(l)) {
                continue;
            }
            List<List<int[]>> perWorker = new ArrayList<>();
            for (int i = 0; i < w; i++) {
                perWorker.add(new ArrayList<>());
            }
            for (int e = 0; e < c.numExperts(); e++) {
                for (int r : placement.replicasOf(l, e)) {
                    for (int s = 0; s < k; s++) {
                        perWorker.get((r + s) % w).add(new int[] {e, s});
                    }
                }
            }
            for (int i = 0; i < w; i++) {
                List<int[]> held = perWorker.get(i);
                if (held.isEmpty()) {
                    continue;
                }
                held.sort((a, b) -> a[0] != b[0] ? Integer.compare(a[0], b[0]) : Integer.compare(a[1], b[1]));
                int[] ids = held.stream().mapToInt(x -> x[0]).toArray();
                int[] sh = held.stream().mapToInt(x -> x[1]).toArray();
                experts[i] += (int) IntStream.of(ids).distinct().count();
                shards[i] += ids.length;
                holdings.get(i).add(new CapacityPlan.LayerHolding(l, ids, sh));
            }
        }
        List<CapacityPlan.WorkerPlan> out = new ArrayList<>();
        for (int i = 0; i < w; i++) {
            long eb = shards[i] * shardBytes;
            long bytes = eb + o.overheadBytes();
            out.add(new CapacityPlan.WorkerPlan(i, placement.workers().get(i), experts[i], shards[i], eb, o.overheadBytes(), bytes,
                    bytes <= o.memoryPerWorker(), List.copyOf(holdings.get(i))));
        }
        return out;
    }

    private static CapacityPlan.FrontendPlan frontend(ParameterCount p, PlanOptions o, long kvPerToken) {
        long b = o.weightDtype().blockBytes(); // plain floats: bytes per parameter
        Map<String, Long> m = new LinkedHashMap<>();
        p.components().forEach((name, params) -> {
            if (!name.equals("routed_experts")) {
                m.put(name, params * b);
            }
        });
        m.put("kv_cache", kvPerToken * o.kvTokens());
        m.put("overhead", o.overheadBytes());
        long total = m.values().stream().mapToLong(Long::longValue).sum();
        return new CapacityPlan.FrontendPlan(Collections.unmodifiableMap(m), total, total <= o.memoryPerWorker());
    }

    /**
     * The fewest workers (from K up to {@code limit}) whose largest share fits. Today's policies
     * place every sparse layer alike, so one layer's placement, scaled by the number of sparse
     * layers, gives each worker's bytes without building W × layers × experts maps per candidate.
     */
    private static Integer minWorkers(ModelConfig c, PlanOptions o, long shardBytes, int limit) {
        int sparse = c.sparseLayerCount();
        for (int w = o.expertShards(); w <= limit; w++) {
            if (maxWorkerBytes(c, o, shardBytes, sparse, w) <= o.memoryPerWorker()) {
                return w;
            }
        }
        return null;
    }

    /** The largest worker's bytes with {@code w} workers (one-layer placement × sparse layers + overhead). */
    static long maxWorkerBytes(ModelConfig c, PlanOptions o, long shardBytes, int sparse, int w) {
        ExpertPlacement one = ExpertPlacement.create(new boolean[] {true}, c.numExperts(), workerNames(w), o.policy(), 0);
        long[] slices = new long[w];
        for (int e = 0; e < c.numExperts(); e++) {
            for (int r : one.replicasOf(0, e)) {
                for (int s = 0; s < o.expertShards(); s++) {
                    slices[(r + s) % w]++;
                }
            }
        }
        long max = 0;
        for (long n : slices) {
            max = Math.max(max, n);
        }
        return max * sparse * shardBytes + o.overheadBytes();
    }

    private static List<String> notes(PlanModel model, PlanOptions o, long kvPerToken) {
        ModelConfig c = model.config();
        List<String> n = new ArrayList<>();
        n.add("Bytes are weights at rest: routed experts in " + o.expertDtype() + " ("
                + new BigDecimal(o.expertDtype().bitsPerWeight()).stripTrailingZeros().toPlainString() + " bits per weight"
                + (o.expertDtype().quantized() ? ", GGUF blocks of " + o.expertDtype().blockSize() + " weights in " + o.expertDtype().blockBytes() + " B" : "")
                + "), every other weight in " + o.weightDtype() + ".");
        n.add("Each process (the frontend and every worker) is allowed " + ByteSize.format(o.overheadBytes())
                + " beside its weights and KV cache: JVM and code, kernel threads, activation arenas, wire buffers.");
        String kv;
        if (c.mla() != null) {
            kv = "KV cache: " + o.kvTokens() + " tokens × " + kvPerToken + " B/token (" + o.kvDtype() + " MLA latents of " + c.layers()
                    + " layers × (kv_lora_rank " + c.mla().kvLoraRank() + " + qk_rope_head_dim " + c.mla().qkRopeDim()
                    + "), the compressed cache the engine keeps; the expanded per-head keys and values would take "
                    + expandedBytesPerToken(c, o.kvDtype()) + " B/token).";
        } else {
            kv = "KV cache: " + o.kvTokens() + " tokens × " + kvPerToken + " B/token (" + o.kvDtype() + " keys and values of "
                    + c.layers() + " layers × " + c.cachedKvHeads() + " heads × (" + c.keyHeadDim() + " + " + c.valueHeadDim()
                    + "), as the engine stores them).";
        }
        n.add(kv);
        if (o.expertShards() > 1) {
            n.add("Expert shards: each expert's intermediate dimension (" + c.moeIntermediate() + ") is cut in " + o.expertShards()
                    + " slices of " + c.moeIntermediate() / o.expertShards() + " on consecutive workers (the replica's worker, then the next ones, wrapping).");
        }
        if (model.params().mtpModules() > 0) {
            n.add("Not counted: " + model.params().mtpModules() + " multi-token-prediction module(s) of " + ByteSize.count(model.params().mtpParams())
                    + " parameters (num_nextn_predict_layers), which the engine does not load; the checkpoint also stores copies of the embedding and head for them.");
        }
        return List.copyOf(n);
    }
}
