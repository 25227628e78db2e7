package io.epserve.model.plan;

import io.epserve.moe.ExpertPlacement;
import java.util.List;
import java.util.Map;

/**
 * The planner's answer for one deployment: what each worker and the frontend hold, in bytes,
 * whether each fits, and the smallest worker count that would. A value (DESIGN.md §3.5).
 *
 * @param model              the model planned
 * @param options            the deployment asked about
 * @param placement          which worker holds which experts (primary replicas)
 * @param expertBytes        bytes of one whole routed expert in the expert dtype
 * @param shardBytes         bytes of one shard (1/K of an expert's intermediate dimension); = expertBytes when K = 1
 * @param kvBytesPerToken    KV-cache bytes per cached token, all layers
 * @param workers            one entry per worker
 * @param frontend           the frontend's bytes
 * @param fits               whether the frontend and every worker fit their memory
 * @param minWorkers         the smallest worker count for which everything fits, or null when none up to {@code searchLimit} does
 *                           (always null when the frontend does not fit)
 * @param minExpertWorkers   the smallest worker count whose workers fit, the frontend aside, or null
 * @param searchLimit        the largest worker count tried: experts × shards, beyond which a worker holds no less
 * @param notes              what the numbers assume, in sentences
 */
public record CapacityPlan(PlanModel model, PlanOptions options, ExpertPlacement placement, long expertBytes, long shardBytes,
                           long kvBytesPerToken, List<WorkerPlan> workers, FrontendPlan frontend, boolean fits, Integer minWorkers,
                           Integer minExpertWorkers, int searchLimit, List<String> notes) {

    /**
     * One worker's share.
     *
     * @param experts      (layer, expert) replicas of which it holds all or a shard
     * @param shards       slices it holds; equals {@code experts} without sharding
     * @param expertBytes  bytes of those experts or shards
     * @param bytes        expertBytes + overhead
     * @param holdings     per sparse layer, the experts held (and which shard of each, when sharded)
     */
    public record WorkerPlan(int index, String name, int experts, int shards, long expertBytes, long overheadBytes, long bytes,
                             boolean fits, List<LayerHolding> holdings) {}

    /** The experts one worker holds in one layer; {@code shards[i]} is the slice of {@code experts[i]} (all 0 when unsharded). */
    public record LayerHolding(int layer, int[] experts, int[] shards) {}

    /**
     * The frontend: every weight outside the routed experts, the KV cache and the overhead.
     *
     * @param components name → bytes: embedding, lm_head, attention, norms, routers, dense_mlp, shared_experts, kv_cache, overhead
     */
    public record FrontendPlan(Map<String, Long> components, long bytes, boolean fits) {}

    /** The largest worker's bytes. */
    public long maxWorkerBytes() {
        return workers.stream().mapToLong(WorkerPlan::bytes).max().orElse(0);
    }

    /** Bytes of all workers together. */
    public long totalWorkerBytes() {
        return workers.stream().mapToLong(WorkerPlan::bytes).sum();
    }
}
