package io.epserve.model;

import java.util.Arrays;

/** A single sequence's cache in arrays of its own, row = position, grown on demand. */
public final class ContiguousKvCache implements KvCache {
    private final KvLayout layout;
    private final float[][] keys;
    private final float[][] values;
    private final short[][] keys16;
    private final short[][] values16;
    private int length;
    private int capacity;

    /** A cache in the default layout ({@link KvOptions#defaults()}). */
    public ContiguousKvCache(ModelConfig cfg, int initialCapacity) {
        this(KvLayout.of(cfg, KvOptions.defaults()), initialCapacity);
    }

    public ContiguousKvCache(KvLayout layout, int initialCapacity) {
        this.layout = layout;
        this.capacity = Math.max(1, initialCapacity);
        int layers = layout.layers();
        boolean bf16 = layout.dtype() == KvDtype.BF16;
        keys = bf16 ? null : new float[layers][];
        keys16 = bf16 ? new short[layers][] : null;
        values = bf16 || layout.sharedRows() ? keys : new float[layers][];
        values16 = !bf16 ? null : layout.sharedRows() ? keys16 : new short[layers][];
        for (int l = 0; l < layers; l++) {
            allocate(l, capacity);
        }
    }

    /** Allocates layer l's arrays for {@code cap} rows, or grows them to it keeping what they hold. */
    private void allocate(int l, int cap) {
        int ks = layout.keyStride();
        int vs = layout.valueStride();
        if (keys16 != null) {
            keys16[l] = keys16[l] == null ? new short[ks * cap] : Arrays.copyOf(keys16[l], ks * cap);
            if (!layout.sharedRows()) {
                values16[l] = values16[l] == null ? new short[vs * cap] : Arrays.copyOf(values16[l], vs * cap);
            }
        } else {
            keys[l] = keys[l] == null ? new float[ks * cap] : Arrays.copyOf(keys[l], ks * cap);
            if (!layout.sharedRows()) {
                values[l] = values[l] == null ? new float[vs * cap] : Arrays.copyOf(values[l], vs * cap);
            }
        }
    }

    public KvLayout layout() {
        return layout;
    }

    @Override
    public KvDtype dtype() {
        return layout.dtype();
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int keyStride() {
        return layout.keyStride();
    }

    @Override
    public int valueStride() {
        return layout.valueStride();
    }

    @Override
    public float[] keys(int layer) {
        return f32(keys)[layer];
    }

    @Override
    public float[] values(int layer) {
        return f32(values)[layer];
    }

    @Override
    public short[] keysBf16(int layer) {
        return bf16(keys16)[layer];
    }

    @Override
    public short[] valuesBf16(int layer) {
        return bf16(values16)[layer];
    }

    private static float[][] f32(float[][] a) {
        if (a == null) {
            throw new UnsupportedOperationException("this KV cache stores bf16");
        }
        return a;
    }

    private static short[][] bf16(short[][] a) {
        if (a == null) {
            throw new UnsupportedOperationException("this KV cache stores f32");
        }
        return a;
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
        for (int l = 0; l < layout.layers(); l++) {
            allocate(l, cap);
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
