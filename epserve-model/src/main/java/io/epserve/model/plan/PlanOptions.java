package io.epserve.model.plan;

import io.epserve.moe.ExpertPlacement;

/**
 * What to plan for: a validated record with named defaults (DESIGN.md §3.11). Checks that need the
 * model (shards dividing the expert's intermediate size, quantized rows) are the planner's.
 *
 * @param workers          expert workers
 * @param memoryPerWorker  bytes each worker, and the frontend, may use
 * @param weightDtype      attention, norms, routers, dense layers, shared experts, embeddings (plain floats)
 * @param expertDtype      routed experts, plain or GGUF-quantized
 * @param expertShards     K: each expert's intermediate dimension split in K slices on K workers
 * @param kvTokens         tokens of KV cache the frontend holds (all sequences together)
 * @param kvDtype          element type of cached keys and values (the engine stores f32 today)
 * @param policy           how experts are spread over workers
 * @param overheadBytes    fixed allowance per process (frontend and each worker) for everything but weights and KV
 */
public record PlanOptions(int workers, long memoryPerWorker, WeightFormat weightDtype, WeightFormat expertDtype,
                          int expertShards, long kvTokens, WeightFormat kvDtype, ExpertPlacement.Policy policy,
                          long overheadBytes) {

    /**
     * The per-process allowance beside weights and KV cache: the JVM and its code, the kernel
     * pool's threads, the per-batch-size activation arenas and the gRPC wire buffers. An
     * allowance, not a measurement; override it with {@code --overhead}.
     */
    public static final long DEFAULT_OVERHEAD = 512L << 20;
    public static final long DEFAULT_KV_TOKENS = 4096;
    public static final WeightFormat DEFAULT_WEIGHT_DTYPE = WeightFormat.BF16;
    public static final WeightFormat DEFAULT_EXPERT_DTYPE = WeightFormat.BF16;
    /** The engine's KV cache holds float32 keys and values today. */
    public static final WeightFormat DEFAULT_KV_DTYPE = WeightFormat.F32;

    public PlanOptions {
        if (workers < 1) {
            throw new IllegalArgumentException("workers must be at least 1, is " + workers);
        }
        if (memoryPerWorker < 1) {
            throw new IllegalArgumentException("memory per worker must be positive, is " + memoryPerWorker);
        }
        if (weightDtype.quantized()) {
            throw new IllegalArgumentException("dtype " + weightDtype + " is for routed experts only; attention and dense weights use "
                    + WeightFormat.labels(WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16));
        }
        if (kvDtype.quantized()) {
            throw new IllegalArgumentException("KV cache dtype must be one of " + WeightFormat.labels(WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16)
                    + ", not " + kvDtype);
        }
        if (expertShards < 1) {
            throw new IllegalArgumentException("expert shards must be at least 1, is " + expertShards);
        }
        if (expertShards > workers) {
            throw new IllegalArgumentException("expert shards " + expertShards + " need as many workers; there are " + workers);
        }
        if (kvTokens < 0) {
            throw new IllegalArgumentException("KV tokens must be 0 or more, is " + kvTokens);
        }
        if (overheadBytes < 0) {
            throw new IllegalArgumentException("overhead must be 0 or more bytes, is " + overheadBytes);
        }
        if (policy == null) {
            throw new IllegalArgumentException("a placement policy is required");
        }
    }

    /** The defaults for {@code workers} workers of {@code memoryPerWorker} bytes each. */
    public static PlanOptions defaults(int workers, long memoryPerWorker) {
        return new PlanOptions(workers, memoryPerWorker, DEFAULT_WEIGHT_DTYPE, DEFAULT_EXPERT_DTYPE, 1, DEFAULT_KV_TOKENS,
                DEFAULT_KV_DTYPE, ExpertPlacement.Policy.CONTIGUOUS, DEFAULT_OVERHEAD);
    }

    public PlanOptions withWorkers(int w) {
        return new PlanOptions(w, memoryPerWorker, weightDtype, expertDtype, expertShards, kvTokens, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withMemoryPerWorker(long m) {
        return new PlanOptions(workers, m, weightDtype, expertDtype, expertShards, kvTokens, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withWeightDtype(WeightFormat f) {
        return new PlanOptions(workers, memoryPerWorker, f, expertDtype, expertShards, kvTokens, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withExpertDtype(WeightFormat f) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, f, expertShards, kvTokens, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withExpertShards(int k) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, expertDtype, k, kvTokens, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withKvTokens(long t) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, expertDtype, expertShards, t, kvDtype, policy, overheadBytes);
    }

    public PlanOptions withKvDtype(WeightFormat f) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, expertDtype, expertShards, kvTokens, f, policy, overheadBytes);
    }

    public PlanOptions withPolicy(ExpertPlacement.Policy p) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, expertDtype, expertShards, kvTokens, kvDtype, p, overheadBytes);
    }

    public PlanOptions withOverheadBytes(long b) {
        return new PlanOptions(workers, memoryPerWorker, weightDtype, expertDtype, expertShards, kvTokens, kvDtype, policy, b);
    }
}
