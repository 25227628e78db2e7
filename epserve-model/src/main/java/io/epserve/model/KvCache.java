package io.epserve.model;

import java.util.Arrays;

/**
 * Keys and values of one sequence, per layer, contiguous by position (the paged cache of the
 * server replaces this). Keys are stored after RoPE, so a decode step reads them as they are.
 * <pre>
 *   keys[layer]   = [position][kvHeads × keyHeadDim]
 *   values[layer] = [position][kvHeads × valueHeadDim]
 * </pre>
 */
public final class KvCache {
    private final int keyStride;
    private final int valueStride;
    private final float[][] keys;
    private final float[][] values;
    private int length;
    private int capacity;

    public KvCache(ModelConfig cfg, int initialCapacity) {
        this.keyStride = cfg.cachedKvHeads() * cfg.keyHeadDim();
        this.valueStride = cfg.cachedKvHeads() * cfg.valueHeadDim();
        this.capacity = Math.max(1, initialCapacity);
        this.keys = new float[cfg.layers()][keyStride * capacity];
        this.values = new float[cfg.layers()][valueStride * capacity];
    }

    /** Positions cached so far; the next token goes to position {@code length()}. */
    public int length() {
        return length;
    }

    public int keyStride() {
        return keyStride;
    }

    public int valueStride() {
        return valueStride;
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }

    /** Makes room for positions up to {@code needed - 1}. */
    void ensureCapacity(int needed) {
        if (needed <= capacity) {
            return;
        }
        int cap = Math.max(needed, capacity * 2);
        for (int l = 0; l < keys.length; l++) {
            keys[l] = Arrays.copyOf(keys[l], keyStride * cap);
            values[l] = Arrays.copyOf(values[l], valueStride * cap);
        }
        capacity = cap;
    }

    /** Marks n more positions as cached (after their keys/values were written). */
    public void advance(int n) {
        length += n;
    }

    /** Forgets positions from {@code newLength} on. */
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " positions to " + newLength);
        }
        length = newLength;
    }
}
