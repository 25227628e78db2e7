package io.epserve.engine.kv;

import io.epserve.engine.scheduler.BlockTable;
import io.epserve.model.ModelConfig;

/**
 * The memory of the paged KV cache: per layer, one key and one value array shared by every
 * sequence, cut into blocks of {@code blockSize} rows (as vLLM's PagedAttention):
 * <pre>
 *   keys(layer)   = [block 0: rows 0..B-1][block 1: rows B..2B-1] ...   row = kvHeads × keyHeadDim floats
 *   values(layer) = [block 0 ...........][block 1 ..............] ...
 * </pre>
 * Which sequence owns which block is the scheduler's business ({@link BlockTable}); a
 * sequence sees its blocks through a {@link PagedKvCache}.
 */
public final class KvBlockPool {
    private final int layers;
    private final int keyStride;
    private final int valueStride;
    private final int blockSize;
    private final int totalBlocks;
    private final float[][] keys;
    private final float[][] values;

    public KvBlockPool(int layers, int keyStride, int valueStride, int blockSize, int totalBlocks) {
        if (layers < 1 || keyStride < 1 || valueStride < 1 || blockSize < 1 || totalBlocks < 1) {
            throw new IllegalArgumentException("a KV pool needs layers, strides, block size and blocks >= 1, got " + layers + ", "
                    + keyStride + ", " + valueStride + ", " + blockSize + ", " + totalBlocks);
        }
        long rows = (long) blockSize * totalBlocks;
        long floats = rows * Math.max(keyStride, valueStride);
        if (floats > MAX_ARRAY) {
            throw new IllegalArgumentException("a KV pool of " + totalBlocks + " blocks of " + blockSize + " positions needs " + floats
                    + " floats per layer, more than a Java array holds (" + MAX_ARRAY + "): lower the KV cache budget");
        }
        this.layers = layers;
        this.keyStride = keyStride;
        this.valueStride = valueStride;
        this.blockSize = blockSize;
        this.totalBlocks = totalBlocks;
        this.keys = new float[layers][(int) (rows * keyStride)];
        this.values = new float[layers][(int) (rows * valueStride)];
    }

    /** The largest float[] the pool allocates per layer and kind. */
    static final long MAX_ARRAY = Integer.MAX_VALUE - 16;

    /** A pool for {@code cfg}'s cache layout with as many blocks as {@code budgetBytes} pays for. */
    public static KvBlockPool forModel(ModelConfig cfg, int blockSize, long budgetBytes) {
        return new KvBlockPool(cfg.layers(), keyStride(cfg), valueStride(cfg), blockSize, blocksFor(cfg, blockSize, budgetBytes));
    }

    /** Bytes of one block: B × layers × (keyStride + valueStride) × 4 (float32). */
    public static long bytesPerBlock(ModelConfig cfg, int blockSize) {
        return (long) blockSize * cfg.layers() * (keyStride(cfg) + valueStride(cfg)) * Float.BYTES;
    }

    /** How many whole blocks {@code budgetBytes} pays for. */
    public static int blocksFor(ModelConfig cfg, int blockSize, long budgetBytes) {
        if (blockSize < 1) {
            throw new IllegalArgumentException("the KV block size must be >= 1, got " + blockSize);
        }
        long per = bytesPerBlock(cfg, blockSize);
        long blocks = budgetBytes / per;
        if (blocks < 1) {
            throw new IllegalArgumentException("a KV cache budget of " + budgetBytes + " bytes is less than one block of " + blockSize
                    + " positions (" + per + " bytes)");
        }
        return (int) Math.min(blocks, Integer.MAX_VALUE);
    }

    static int keyStride(ModelConfig cfg) {
        return cfg.cachedKvHeads() * cfg.keyHeadDim();
    }

    static int valueStride(ModelConfig cfg) {
        return cfg.cachedKvHeads() * cfg.valueHeadDim();
    }

    /** A cache view for one sequence over its block table. */
    public PagedKvCache view(BlockTable table) {
        return new PagedKvCache(this, table);
    }

    public int layers() {
        return layers;
    }

    public int keyStride() {
        return keyStride;
    }

    public int valueStride() {
        return valueStride;
    }

    public int blockSize() {
        return blockSize;
    }

    public int totalBlocks() {
        return totalBlocks;
    }

    /** Bytes the pool's arrays hold. */
    public long bytes() {
        return (long) blockSize * totalBlocks * layers * (keyStride + valueStride) * Float.BYTES;
    }

    float[] keys(int layer) {
        return keys[layer];
    }

    float[] values(int layer) {
        return values[layer];
    }
}
