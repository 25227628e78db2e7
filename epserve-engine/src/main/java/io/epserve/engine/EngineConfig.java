package io.epserve.engine;

/**
 * The engine's settings, validated once at construction (DESIGN.md §3.11): a bad value fails
 * with a message naming it.
 *
 * @param kvCacheBytes   memory budget of the paged KV cache; the pool gets as many whole blocks as
 *                       it pays for (a block is {@code blockSize × layers × (keyStride + valueStride) × 4} bytes)
 * @param blockSize      positions per KV block
 * @param maxBatchTokens tokens one step may run (each decode is 1, a prefill chunk its length); at
 *                       least {@code maxRunning}
 * @param maxRunning     sequences in the running batch at most
 * @param maxWaiting     requests the waiting queue holds; beyond it {@link Submission.QueueFull}
 * @param prefixCaching  whether full KV blocks of a prompt prefix that an earlier request computed
 *                       are reused (on by default, as in vLLM: outputs do not change, see
 *                       {@link io.epserve.engine.scheduler.Scheduler})
 */
public record EngineConfig(long kvCacheBytes, int blockSize, int maxBatchTokens, int maxRunning, int maxWaiting,
                           boolean prefixCaching) {
    public static final long DEFAULT_KV_CACHE_BYTES = 256L << 20;
    public static final int DEFAULT_BLOCK_SIZE = 16;
    public static final int DEFAULT_MAX_BATCH_TOKENS = 512;
    public static final int DEFAULT_MAX_RUNNING = 64;
    public static final int DEFAULT_MAX_WAITING = 256;

    public EngineConfig {
        if (kvCacheBytes < 1) {
            throw new IllegalArgumentException("kvCacheBytes must be > 0, got " + kvCacheBytes);
        }
        if (blockSize < 1 || blockSize > 4096) {
            throw new IllegalArgumentException("blockSize must be in [1, 4096], got " + blockSize);
        }
        if (maxBatchTokens < 1) {
            throw new IllegalArgumentException("maxBatchTokens must be >= 1, got " + maxBatchTokens);
        }
        if (maxRunning < 1) {
            throw new IllegalArgumentException("maxRunning must be >= 1, got " + maxRunning);
        }
        if (maxWaiting < 0) {
            throw new IllegalArgumentException("maxWaiting must be >= 0, got " + maxWaiting);
        }
        if (maxBatchTokens < maxRunning) {
            throw new IllegalArgumentException("maxBatchTokens (" + maxBatchTokens + ") must be >= maxRunning (" + maxRunning
                    + "), so that every running sequence can decode in every step");
        }
    }

    /** With prefix caching on (the default). */
    public EngineConfig(long kvCacheBytes, int blockSize, int maxBatchTokens, int maxRunning, int maxWaiting) {
        this(kvCacheBytes, blockSize, maxBatchTokens, maxRunning, maxWaiting, true);
    }

    public static EngineConfig defaults() {
        return new EngineConfig(DEFAULT_KV_CACHE_BYTES, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_RUNNING,
                DEFAULT_MAX_WAITING);
    }

    public EngineConfig withKvCacheBytes(long v) {
        return new EngineConfig(v, blockSize, maxBatchTokens, maxRunning, maxWaiting, prefixCaching);
    }

    public EngineConfig withBlockSize(int v) {
        return new EngineConfig(kvCacheBytes, v, maxBatchTokens, maxRunning, maxWaiting, prefixCaching);
    }

    public EngineConfig withMaxBatchTokens(int v) {
        return new EngineConfig(kvCacheBytes, blockSize, v, maxRunning, maxWaiting, prefixCaching);
    }

    public EngineConfig withMaxRunning(int v) {
        return new EngineConfig(kvCacheBytes, blockSize, maxBatchTokens, v, maxWaiting, prefixCaching);
    }

    public EngineConfig withMaxWaiting(int v) {
        return new EngineConfig(kvCacheBytes, blockSize, maxBatchTokens, maxRunning, v, prefixCaching);
    }

    public EngineConfig withPrefixCaching(boolean v) {
        return new EngineConfig(kvCacheBytes, blockSize, maxBatchTokens, maxRunning, maxWaiting, v);
    }
}
