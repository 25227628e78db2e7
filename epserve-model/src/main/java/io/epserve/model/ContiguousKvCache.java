package io.epserve.model;

import java.util.Arrays;

/** A single sequence's cache in arrays of its own, row = position, grown on demand. */
public final class ContiguousKvCache implements KvCache {
    private final int keyStride;
    private final int valueStride;
    private final float[][] keys;
    private final float[][] values;
    private int length;
    private int capacity;

    public ContiguousKvCache(ModelConfig cfg, int initialCapacity) {
        this.keyStride = cfg.cachedKvHeads() * cfg.keyHeadDim();
        this.valueStride = cfg.cachedKvHeads() * cfg.valueHeadDim();
        this.capacity = Math.max(1, initialCapacity);
        this.keys = new float[cfg.layers()][keyStride * capacity];
        this.values = new float[cfg.layers()][valueStride * capacity];
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int keyStride() {
        return keyStride;
    }

    @Override
    public int valueStride() {
        return valueStride;
    }

    @Override
    public float[] keys(int layer) {
        return keys[layer];
    }

    @Override
    public float[] values(int layer) {
        return values[layer];
    }

    @Override
    public int row(int position) {
        return position;
    }

    @Override
    public boolean contiguous() {
        return true;
    }

    @Override
    public void reserve(int needed) {
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

    @Override
    public void advance(int n) {
        length += n;
    }

    @Override
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a cache of " + length + " positions to " + newLength);
        }
        length = newLength;
    }
}
