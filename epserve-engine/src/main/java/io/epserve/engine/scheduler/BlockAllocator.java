package io.epserve.engine.scheduler;

import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;

/**
 * Hands out the ids of a fixed pool of KV blocks, {@code 0 .. total-1}, counts their references
 * and remembers what full prompt blocks hold, so a later prompt with the same prefix reuses them
 * (automatic prefix caching, as vLLM's: content-addressed blocks, reference-counted, evicted
 * least recently used). Pure bookkeeping: the memory behind an id lives in the engine's block
 * pool. Not thread-safe: the scheduler owns it.
 *
 * <p>A block is in one of three states:
 * <pre>
 *   free ──allocate──▶ in use (refs ≥ 1) ──free, refs→0, uncached──▶ free
 *                        │  ▲                     │
 *                        │  └────acquire──────────┤ refs→0, cached
 *                        │                        ▼
 *                        └──────────────── cached-evictable (LRU) ──allocate when no free block: evicted
 * </pre>
 * Free blocks are reused first (a LIFO stack), so a busy pool touches as few distinct blocks as
 * it can; a cached block is evicted only when no free block is left, the least recently released
 * first.
 *
 * <p>A cached block is keyed by its parent (the block before it in the prompt, with that block's
 * allocation generation) and its exact tokens, never by a hash alone: a hit is the same tokens
 * after the same verified prefix, so it cannot be a collision. Generations change on every
 * allocation, so a key whose parent block was evicted and reused never matches again.
 */
public final class BlockAllocator {
    /** What {@link #allocate()} and {@link #lookup} return when there is no block. */
    public static final int NONE = -1;

    /** A cached block's content address. */
    private record Key(int parent, long parentGeneration, int[] tokens) {
        @Override
        public boolean equals(Object o) {
            return o instanceof Key k && k.parent == parent && k.parentGeneration == parentGeneration
                    && Arrays.equals(k.tokens, tokens);
        }

        @Override
        public int hashCode() {
            return 31 * (31 * parent + Long.hashCode(parentGeneration)) + Arrays.hashCode(tokens);
        }
    }

    private final int[] freeStack;
    private final int[] refs;
    private final long[] generation;
    private final Key[] keyOf;
    private final Map<Key, Integer> index = new HashMap<>();
    /** Cached blocks nobody references, least recently released first. */
    private final LinkedHashSet<Integer> evictable = new LinkedHashSet<>();
    private int free;
    private long evictions;

    public BlockAllocator(int totalBlocks) {
        if (totalBlocks < 1) {
            throw new IllegalArgumentException("a block pool needs at least one block, got " + totalBlocks);
        }
        freeStack = new int[totalBlocks];
        refs = new int[totalBlocks];
        generation = new long[totalBlocks];
        keyOf = new Key[totalBlocks];
        // block 0 on top, so a fresh pool hands out 0, 1, 2, ...
        for (int i = 0; i < totalBlocks; i++) {
            freeStack[i] = totalBlocks - 1 - i;
        }
        free = totalBlocks;
    }

    /**
     * A block for new content, or {@link #NONE} when every block is in use (an expected outcome,
     * not an error). Takes a free block first, else evicts the least recently released cached one.
     */
    public int allocate() {
        int id;
        if (free > 0) {
            id = freeStack[--free];
        } else if (!evictable.isEmpty()) {
            id = evictable.removeFirst();
            index.remove(keyOf[id]);
            keyOf[id] = null;
            evictions++;
        } else {
            return NONE;
        }
        generation[id]++;
        refs[id] = 1;
        return id;
    }

    /** Drops one reference; the last one returns the block to the free stack, or to the cache if it holds a prompt block. */
    public void free(int id) {
        check(id);
        if (refs[id] == 0) {
            throw new IllegalStateException("block " + id + " is freed twice");
        }
        if (--refs[id] == 0) {
            if (keyOf[id] != null) {
                evictable.addLast(id);
            } else {
                freeStack[free++] = id;
            }
        }
    }

    /**
     * The cached block holding {@code tokens[from, from + length)} right after block {@code parent}
     * ({@link #NONE} for the first block of a prompt), or {@link #NONE}.
     */
    public int lookup(int parent, int[] tokens, int from, int length) {
        Integer id = index.get(key(parent, tokens, from, length));
        return id == null ? NONE : id;
    }

    /** Takes a reference to a cached block found by {@link #lookup} (taking it out of the eviction order). */
    public void acquire(int id) {
        check(id);
        if (refs[id] == 0) {
            if (!evictable.remove(id)) {
                throw new IllegalStateException("block " + id + " is neither in use nor cached");
            }
        }
        refs[id]++;
    }

    /**
     * Records that in-use block {@code id} holds {@code tokens[from, from + length)} after block
     * {@code parent}. Returns true when the block is now (or already was) the cached block for
     * that content; false when another block already holds it (two prompts computed the same
     * prefix at once), and then this one stays uncached.
     */
    public boolean register(int id, int parent, int[] tokens, int from, int length) {
        check(id);
        if (refs[id] == 0) {
            throw new IllegalStateException("block " + id + " is registered while not in use");
        }
        Key k = key(parent, tokens, from, length);
        if (keyOf[id] != null) {
            return keyOf[id].equals(k);
        }
        Integer holder = index.putIfAbsent(k, id);
        if (holder != null) {
            return false;
        }
        keyOf[id] = k;
        return true;
    }

    private Key key(int parent, int[] tokens, int from, int length) {
        long parentGeneration = parent == NONE ? 0 : generation[check(parent)];
        return new Key(parent, parentGeneration, Arrays.copyOfRange(tokens, from, from + length));
    }

    private int check(int id) {
        if (id < 0 || id >= refs.length) {
            throw new IllegalArgumentException("block " + id + " is outside the pool [0, " + refs.length + ")");
        }
        return id;
    }

    /** Whether {@code blocks} more can be allocated (free or evictable). */
    public boolean canAllocate(int blocks) {
        return blocks <= free();
    }

    public int total() {
        return refs.length;
    }

    /** Blocks an allocation can take: free ones plus cached ones nobody references. */
    public int free() {
        return free + evictable.size();
    }

    /** Blocks referenced by at least one sequence. */
    public int used() {
        return refs.length - free();
    }

    /** Blocks holding a cached prompt block (in use or evictable). */
    public int cached() {
        return index.size();
    }

    /** Cached blocks evicted to make room so far. */
    public long evictions() {
        return evictions;
    }
}
