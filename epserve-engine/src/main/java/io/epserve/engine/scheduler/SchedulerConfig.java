package io.epserve.engine.scheduler;

/**
 * The scheduler's limits, validated once (DESIGN.md §3.11).
 *
 * @param blockSize      positions per KV block
 * @param totalBlocks    KV blocks in the pool
 * @param maxBatchTokens tokens one step may run (decodes count 1, prefill chunks their length)
 * @param maxRunning     sequences in the running batch at most
 * @param maxWaiting     sequences the waiting queue accepts from {@link Scheduler#submit} at most
 *                       (preempted sequences go back regardless)
 * @param maxPositions   the model's context length
 */
public record SchedulerConfig(int blockSize, int totalBlocks, int maxBatchTokens, int maxRunning, int maxWaiting,
                              int maxPositions) {
    public SchedulerConfig {
        positive("blockSize", blockSize);
        positive("totalBlocks", totalBlocks);
        positive("maxBatchTokens", maxBatchTokens);
        positive("maxRunning", maxRunning);
        if (maxWaiting < 0) {
            throw new IllegalArgumentException("maxWaiting must be >= 0, got " + maxWaiting);
        }
        positive("maxPositions", maxPositions);
    }

    /** Positions the whole pool holds. */
    public long poolPositions() {
        return (long) blockSize * totalBlocks;
    }

    private static void positive(String name, int v) {
        if (v < 1) {
            throw new IllegalArgumentException(name + " must be >= 1, got " + v);
        }
    }
}
