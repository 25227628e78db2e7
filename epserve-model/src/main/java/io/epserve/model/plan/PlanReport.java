package io.epserve.model.plan;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.model.ModelConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/** A {@link CapacityPlan} as people read it and as one JSON object. */
public final class PlanReport {
    private PlanReport() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The plan as one JSON object:
     * <pre>
     * { "model": {source, architecture, layers, sparse_layers, hidden, vocab, experts, top_k, moe_intermediate,
     *             shared_intermediate, dense_intermediate, tie_embeddings, mla},
     *   "total_params", "active_params", "active_compute_params", "mtp_params",
     *   "params": {embedding, lm_head, attention, norms, dense_mlp, routers, shared_experts, routed_experts},
     *   "params_per_expert",
     *   "options": {workers, memory_per_worker, dtype, expert_dtype, expert_shards, kv_tokens, kv_dtype, policy, overhead_bytes},
     *   "expert_bytes", "shard_bytes", "kv_bytes_per_token",
     *   "placement": {epoch, policy, experts_per_layer, describe: [lines]},
     *   "workers": [{index, name, experts, shards, expert_bytes, overhead_bytes, bytes, fits,
     *                layers: [{layer, experts: [ids], shards: [slice per id] (only with shards > 1)}]}],
     *   "frontend": {bytes, fits, components: {embedding, lm_head, attention, norms, routers, dense_mlp,
     *                shared_experts, kv_cache, overhead}},
     *   "fits", "min_workers" (int or null), "min_expert_workers" (int or null: the workers alone, frontend aside),
     *   "min_workers_search_limit", "notes": [sentences] }
     * </pre>
     */
    public static ObjectNode json(CapacityPlan plan) {
        PlanModel m = plan.model();
        ModelConfig c = m.config();
        ParameterCount p = m.params();
        PlanOptions o = plan.options();
        ObjectNode root = JSON.createObjectNode();
        ObjectNode model = root.putObject("model");
        model.put("source", m.source());
        model.put("architecture", m.architecture());
        model.put("layers", c.layers());
        model.put("sparse_layers", c.sparseLayerCount());
        model.put("hidden", c.hidden());
        model.put("vocab", c.vocabSize());
        model.put("experts", c.numExperts());
        model.put("top_k", c.topK());
        model.put("moe_intermediate", c.moeIntermediate());
        model.put("shared_intermediate", c.sharedIntermediate());
        model.put("dense_intermediate", c.denseIntermediate());
        model.put("tie_embeddings", c.tieEmbeddings());
        model.put("mla", c.mla() != null);
        root.put("total_params", p.total());
        root.put("active_params", p.active());
        root.put("active_compute_params", p.activeComputeParams());
        root.put("mtp_params", p.mtpParams());
        ObjectNode params = root.putObject("params");
        p.components().forEach(params::put);
        root.put("params_per_expert", p.paramsPerExpert());
        ObjectNode opts = root.putObject("options");
        opts.put("workers", o.workers());
        opts.put("memory_per_worker", o.memoryPerWorker());
        opts.put("dtype", o.weightDtype().label());
        opts.put("expert_dtype", o.expertDtype().label());
        opts.put("expert_shards", o.expertShards());
        opts.put("kv_tokens", o.kvTokens());
        opts.put("kv_dtype", o.kvDtype().label());
        opts.put("policy", policyName(o));
        opts.put("overhead_bytes", o.overheadBytes());
        root.put("expert_bytes", plan.expertBytes());
        root.put("shard_bytes", plan.shardBytes());
        root.put("kv_bytes_per_token", plan.kvBytesPerToken());
        ObjectNode placement = root.putObject("placement");
        placement.put("epoch", plan.placement().epoch());
        placement.put("policy", policyName(o));
        placement.put("experts_per_layer", plan.placement().numExperts());
        ArrayNode describe = placement.putArray("describe");
        plan.placement().describe().forEach(describe::add);
        ArrayNode workers = root.putArray("workers");
        for (CapacityPlan.WorkerPlan w : plan.workers()) {
            ObjectNode wn = workers.addObject();
            wn.put("index", w.index());
            wn.put("name", w.name());
            wn.put("experts", w.experts());
            wn.put("shards", w.shards());
            wn.put("expert_bytes", w.expertBytes());
            wn.put("overhead_bytes", w.overheadBytes());
            wn.put("bytes", w.bytes());
            wn.put("fits", w.fits());
            ArrayNode layers = wn.putArray("layers");
            for (CapacityPlan.LayerHolding h : w.holdings()) {
                ObjectNode ln = layers.addObject();
                ln.put("layer", h.layer());
                ArrayNode ids = ln.putArray("experts");
                for (int e : h.experts()) {
                    ids.add(e);
                }
                if (o.expertShards() > 1) {
                    ArrayNode sh = ln.putArray("shards");
                    for (int s : h.shards()) {
                        sh.add(s);
                    }
                }
            }
        }
        ObjectNode fe = root.putObject("frontend");
        fe.put("bytes", plan.frontend().bytes());
        fe.put("fits", plan.frontend().fits());
        ObjectNode comps = fe.putObject("components");
        plan.frontend().components().forEach(comps::put);
        root.put("fits", plan.fits());
        if (plan.minWorkers() == null) {
            root.putNull("min_workers");
        } else {
            root.put("min_workers", plan.minWorkers());
        }
        if (plan.minExpertWorkers() == null) {
            root.putNull("min_expert_workers");
        } else {
            root.put("min_expert_workers", plan.minExpertWorkers());
        }
        root.put("min_workers_search_limit", plan.searchLimit());
        ArrayNode notes = root.putArray("notes");
        plan.notes().forEach(notes::add);
        return root;
    }

    /** The plan as lines of text. */
    public static List<String> text(CapacityPlan plan) {
        PlanModel m = plan.model();
        ModelConfig c = m.config();
        ParameterCount p = m.params();
        PlanOptions o = plan.options();
        List<String> out = new ArrayList<>();
        out.add("model: " + m.source());
        out.add("  " + m.architecture() + ": " + c.layers() + " layers (" + c.sparseLayerCount() + " sparse), hidden " + c.hidden()
                + ", vocab " + c.vocabSize() + ", " + c.numExperts() + " routed experts (top-" + c.topK() + ") of FFN " + c.moeIntermediate()
                + " per sparse layer" + (c.sharedIntermediate() > 0 ? ", shared expert FFN " + c.sharedIntermediate() : "")
                + (c.mla() != null ? ", MLA attention" : ""));
        out.add(String.format(Locale.ROOT, "parameters: %s total, %s active per token (%s without the embedding lookup)",
                ByteSize.count(p.total()), ByteSize.count(p.active()), ByteSize.count(p.activeComputeParams())));
        out.add(String.format(Locale.ROOT, "  %-16s %10s %12s", "component", "params", "bytes"));
        p.components().forEach((name, n) -> {
            boolean routed = name.equals("routed_experts");
            long bytes = routed ? (long) c.sparseLayerCount() * c.numExperts() * plan.expertBytes() : n * o.weightDtype().blockBytes();
            String dtype = routed ? o.expertDtype().label() : o.weightDtype().label();
            out.add(String.format(Locale.ROOT, "  %-16s %10s %12s  %s%s", name, ByteSize.count(n), ByteSize.format(bytes), dtype,
                    routed ? "  (" + (long) c.sparseLayerCount() * c.numExperts() + " experts × " + ByteSize.count(p.paramsPerExpert())
                            + ", " + ByteSize.format(plan.expertBytes()) + " each)" : ""));
        });
        if (p.mtpModules() > 0) {
            out.add("  (not counted: " + p.mtpModules() + " multi-token-prediction module(s), " + ByteSize.count(p.mtpParams()) + " parameters)");
        }
        out.add("");
        out.addAll(plan.placement().describe());
        if (o.expertShards() > 1) {
            out.add("  each expert is cut in " + o.expertShards() + " shards of " + ByteSize.format(plan.shardBytes())
                    + ": shard s of an expert on worker w lives on worker (w + s) mod " + o.workers());
        }
        out.add("");
        out.add("workers: " + o.workers() + " × " + ByteSize.format(o.memoryPerWorker()) + ", experts in " + o.expertDtype()
                + (o.expertShards() > 1 ? ", " + o.expertShards() + " shards per expert" : "") + ", overhead "
                + ByteSize.format(o.overheadBytes()) + " each");
        out.add(String.format(Locale.ROOT, "  %-8s %8s %8s %14s %14s  %s", "worker", "experts", "shards", "expert bytes", "total", "fits"));
        for (CapacityPlan.WorkerPlan w : plan.workers()) {
            out.add(String.format(Locale.ROOT, "  %-8s %8d %8d %14s %14s  %s", w.name(), w.experts(), w.shards(),
                    ByteSize.format(w.expertBytes()), ByteSize.format(w.bytes()), w.fits() ? "yes" : "NO"));
        }
        out.add("");
        CapacityPlan.FrontendPlan f = plan.frontend();
        out.add("frontend: " + ByteSize.format(f.bytes()) + " of " + ByteSize.format(o.memoryPerWorker()) + ", fits: " + (f.fits() ? "yes" : "NO"));
        f.components().forEach((name, b) -> out.add(String.format(Locale.ROOT, "  %-16s %12s%s", name, ByteSize.format(b),
                name.equals("kv_cache") ? "  (" + o.kvTokens() + " tokens × " + plan.kvBytesPerToken() + " B, " + o.kvDtype() + ")" : "")));
        out.add("");
        long badWorkers = plan.workers().stream().filter(w -> !w.fits()).count();
        out.add("fits: " + (plan.fits() ? "yes" : "NO") + (plan.fits() ? " (the frontend and all " + o.workers() + " workers)"
                : " (" + (f.fits() ? "" : "the frontend" + (badWorkers > 0 ? " and " : "")) + (badWorkers > 0 ? badWorkers + " of " + o.workers() + " workers" : "")
                + " exceed " + ByteSize.format(o.memoryPerWorker()) + ")"));
        if (plan.minWorkers() != null) {
            out.add("minimum workers: " + plan.minWorkers() + " (of " + ByteSize.format(o.memoryPerWorker()) + " each, " + o.expertDtype() + " experts"
                    + (o.expertShards() > 1 ? ", " + o.expertShards() + " shards" : "") + ", " + policyName(o) + " placement)");
        } else if (!f.fits()) {
            out.add("minimum workers: none (the frontend alone needs " + ByteSize.format(f.bytes()) + "; the experts alone "
                    + (plan.minExpertWorkers() != null ? "would need " + plan.minExpertWorkers() + " workers)" : "fit no worker count up to " + plan.searchLimit() + ")"));
        } else {
            out.add("minimum workers: none up to " + plan.searchLimit() + " (one expert slice per layer per worker does not fit "
                    + ByteSize.format(o.memoryPerWorker()) + ")");
        }
        out.add("notes:");
        plan.notes().forEach(n -> out.add("  - " + n));
        return out;
    }

    static String policyName(PlanOptions o) {
        return o.policy().name().toLowerCase(Locale.ROOT).replace('_', '-');
    }
}
