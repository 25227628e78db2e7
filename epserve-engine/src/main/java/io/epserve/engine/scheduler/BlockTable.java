package io.epserve.engine.scheduler;

import java.util.Arrays;

/**
 * One sequence's KV blocks, in position order: position {@code p} lives in block
 * {@code block(p / blockSize)} at slot {@code p % blockSize}.
 * <pre>
 *   positions  0..B-1 | B..2B-1 | 2B..3B-1 | ...
 *   blocks     [ 7 ]    [ 2 ]     [ 12 ]     ...   (ids in the shared pool)
 * </pre>
 * Only the scheduler changes it (when it reserves blocks for a step, preempts or ends the
 * sequence); the engine's paged cache view reads it.
 */
public final class BlockTable {
    private int[] blocks = new int[4];
    private int size;

    public int size() {
        return size;
    }

    public int block(int index) {
        if (index >= size) {
            throw new IndexOutOfBoundsException("block " + index + " of a table of " + size);
        }
        return blocks[index];
    }

    /** A copy of the block ids, for tests and debugging. */
    public int[] toArray() {
        return Arrays.copyOf(blocks, size);
    }

    void add(int block) {
        if (size == blocks.length) {
            blocks = Arrays.copyOf(blocks, size * 2);
        }
        blocks[size++] = block;
    }

    void freeAll(BlockAllocator allocator) {
        for (int i = size - 1; i >= 0; i--) {
            allocator.free(blocks[i]);
        }
        size = 0;
    }

    @Override
    public String toString() {
        return Arrays.toString(toArray());
    }
}
