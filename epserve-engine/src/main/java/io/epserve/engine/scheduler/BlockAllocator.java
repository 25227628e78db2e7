package io.epserve.engine.scheduler;

/**
 * Hands out the ids of a fixed pool of KV blocks, {@code 0 .. total-1}. Pure bookkeeping: the
 * memory behind an id lives in the engine's block pool. Freed blocks are reused first (a LIFO
 * stack), so a busy pool touches as few distinct blocks as it can. Not thread-safe: the
 * scheduler owns it.
 */
public final class BlockAllocator {
    /** What {@link #allocate()} returns when every block is in use. */
    public static final int NONE = -1;

    private final int[] freeStack;
    private final boolean[] inUse;
    private int free;

    public BlockAllocator(int totalBlocks) {
        if (totalBlocks < 1) {
            throw new IllegalArgumentException("a block pool needs at least one block, got " + totalBlocks);
        }
        freeStack = new int[totalBlocks];
        inUse = new boolean[totalBlocks];
        // block 0 on top, so a fresh pool hands out 0, 1, 2, ...
        for (int i = 0; i < totalBlocks; i++) {
            freeStack[i] = totalBlocks - 1 - i;
        }
        free = totalBlocks;
    }

    /** A free block's id, or {@link #NONE} when the pool is exhausted (an expected outcome, not an error). */
    public int allocate() {
        if (free == 0) {
            return NONE;
        }
        int id = freeStack[--free];
        inUse[id] = true;
        return id;
    }

    /** Returns a block to the pool. */
    public void free(int id) {
        if (id < 0 || id >= inUse.length) {
            throw new IllegalArgumentException("block " + id + " is outside the pool [0, " + inUse.length + ")");
        }
        if (!inUse[id]) {
            throw new IllegalStateException("block " + id + " is freed twice");
        }
        inUse[id] = false;
        freeStack[free++] = id;
    }

    public boolean canAllocate(int blocks) {
        return blocks <= free;
    }

    public int total() {
        return inUse.length;
    }

    public int free() {
        return free;
    }

    public int used() {
        return inUse.length - free;
    }
}
