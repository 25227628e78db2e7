package io.epserve.engine.kv;

import io.epserve.engine.scheduler.BlockTable;
import io.epserve.model.KvCache;

/**
 * One sequence's view of the shared {@link KvBlockPool}: position {@code p} is row
 * {@code table[p / B] * B + p % B} of the pool's per-layer arrays. The scheduler reserves the
 * blocks of a step's positions before the step; {@link #reserve} only checks that it did.
 */
public final class PagedKvCache implements KvCache {
    private final KvBlockPool pool;
    private final BlockTable table;
    private final int blockSize;
    private int length;

    PagedKvCache(KvBlockPool pool, BlockTable table) {
        this.pool = pool;
        this.table = table;
        this.blockSize = pool.blockSize();
    }

    public BlockTable blockTable() {
        return table;
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int keyStride() {
        return pool.keyStride();
    }

    @Override
    public int valueStride() {
        return pool.valueStride();
    }

    @Override
    public float[] keys(int layer) {
        return pool.keys(layer);
    }

    @Override
    public float[] values(int layer) {
        return pool.values(layer);
    }

    @Override
    public int row(int position) {
        return table.block(position / blockSize) * blockSize + position % blockSize;
    }

    @Override
    public boolean contiguous() {
        return false;
    }

    /** Positions the reserved blocks hold. */
    public int capacity() {
        return table.size() * blockSize;
    }

    @Override
    public void reserve(int positions) {
        if (positions > capacity()) {
            throw new IllegalStateException("KV blocks for " + positions + " positions are not reserved (the table holds "
                    + capacity() + "): the scheduler reserves a step's blocks before it runs");
        }
    }

    @Override
    public void advance(int n) {
        if (n < 0 || length + n > capacity()) {
            throw new IllegalStateException("cannot advance a paged cache of " + length + " positions by " + n + " with "
                    + capacity() + " reserved");
        }
        length += n;
    }

    /**
     * Takes the first {@code positions} positions as already computed: the scheduler put cached
     * blocks of an earlier, identical prompt prefix at the head of this sequence's table.
     */
    public void adopt(int positions) {
        if (length != 0 || positions < 0 || positions > capacity()) {
            throw new IllegalStateException("cannot adopt " + positions + " cached positions into a paged cache of " + length
                    + " positions with " + capacity() + " reserved");
        }
        length = positions;
    }

    @Override
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " positions to " + newLength);
        }
        length = newLength;
    }
}
