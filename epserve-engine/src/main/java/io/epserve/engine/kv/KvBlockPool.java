package io.epserve.engine.kv;

import io.epserve.engine.scheduler.BlockTable;
import io.epserve.model.KvDtype;
import io.epserve.model.KvLayout;
import io.epserve.model.KvOptions;
import io.epserve.model.ModelConfig;

/**
 * The memory of the paged KV cache: per layer, one key and one value array shared by every
 * sequence, cut into blocks of {@code blockSize} rows (as vLLM's PagedAttention):
 * <pre>
 *   keys(layer)   = [block 0: rows 0..B-1][block 1: rows B..2B-1] ...   row = the layout's keyStride elements
 *   values(layer) = [block 0 ...........][block 1 ..............] ...
 * </pre>
 * Which sequence owns which block is the scheduler's business ({@link BlockTable}); a
 * sequence sees its blocks through a {@link PagedKvCache}.
 */
public final class KvBlockPool {
    private final KvLayout layout;
    private final int blockSize;
    private final int totalBlocks;
    private final float[][] keys;
    private final float[][] values;
    private final short[][] keys16;
    private final short[][] values16;

    /** A float32 pool with separate key and value rows. */
    public KvBlockPool(int layers, int keyStride, int valueStride, int blockSize, int totalBlocks) {
        this(new KvLayout(layers, keyStride, valueStride, KvDtype.F32, false), blockSize, totalBlocks);
    }

    public KvBlockPool(KvLayout layout, int blockSize, int totalBlocks) {
        if (blockSize < 1 || totalBlocks < 1) {
            throw new IllegalArgumentException("a KV pool needs block size and blocks >= 1, got " + blockSize + ", " + totalBlocks);
        }
        long rows = (long) blockSize * totalBlocks;
        long elements = rows * Math.max(layout.keyStride(), layout.valueStride());
        if (elements > MAX_ARRAY) {
            throw new IllegalArgumentException("a KV pool of " + totalBlocks + " blocks of " + blockSize + " positions needs " + elements
                    + " elements per layer, more than a Java array holds (" + MAX_ARRAY + "): lower the KV cache budget");
        }
        this.layout = layout;
        this.blockSize = blockSize;
        this.totalBlocks = totalBlocks;
        int layers = layout.layers();
        int k = (int) (rows * layout.keyStride());
        int v = (int) (rows * layout.valueStride());
        boolean shared = layout.sharedRows();
        if (layout.dtype() == KvDtype.BF16) {
            keys = null;
            values = null;
            keys16 = new short[layers][k];
            values16 = shared ? keys16 : new short[layers][v];
        } else {
            keys = new float[layers][k];
            values = shared ? keys : new float[layers][v];
            keys16 = null;
            values16 = null;
        }
    }

    /** The largest array the pool allocates per layer and kind. */
    static final long MAX_ARRAY = Integer.MAX_VALUE - 16;

    /** A pool for {@code cfg}'s default cache layout ({@link KvOptions#defaults()}) with as many blocks as {@code budgetBytes} pays for. */
    public static KvBlockPool forModel(ModelConfig cfg, int blockSize, long budgetBytes) {
        return forLayout(KvLayout.of(cfg, KvOptions.defaults()), blockSize, budgetBytes);
    }

    /** A pool for {@code layout} with as many blocks as {@code budgetBytes} pays for. */
    public static KvBlockPool forLayout(KvLayout layout, int blockSize, long budgetBytes) {
        return new KvBlockPool(layout, blockSize, blocksFor(layout, blockSize, budgetBytes));
    }

    /** Bytes of one block in {@code cfg}'s default layout. */
    public static long bytesPerBlock(ModelConfig cfg, int blockSize) {
        return bytesPerBlock(KvLayout.of(cfg, KvOptions.defaults()), blockSize);
    }

    /** Bytes of one block: B × the layout's bytes per token. */
    public static long bytesPerBlock(KvLayout layout, int blockSize) {
        return blockSize * layout.bytesPerToken();
    }

    /** How many whole blocks {@code budgetBytes} pays for, in {@code cfg}'s default layout. */
    public static int blocksFor(ModelConfig cfg, int blockSize, long budgetBytes) {
        return blocksFor(KvLayout.of(cfg, KvOptions.defaults()), blockSize, budgetBytes);
    }

    public static int blocksFor(KvLayout layout, int blockSize, long budgetBytes) {
        if (blockSize < 1) {
            throw new IllegalArgumentException("the KV block size must be >= 1, got " + blockSize);
        }
        long per = bytesPerBlock(layout, blockSize);
        long blocks = budgetBytes / per;
        if (blocks < 1) {
            throw new IllegalArgumentException("a KV cache budget of " + budgetBytes + " bytes is less than one block of " + blockSize
                    + " positions (" + per + " bytes)");
        }
        return (int) Math.min(blocks, Integer.MAX_VALUE);
    }

    /** A cache view for one sequence over its block table. */
    public PagedKvCache view(BlockTable table) {
        return new PagedKvCache(this, table);
    }

    public KvLayout layout() {
        return layout;
    }

    public int layers() {
        return layout.layers();
    }

    public int keyStride() {
        return layout.keyStride();
    }

    public int valueStride() {
        return layout.valueStride();
    }

    public int blockSize() {
        return blockSize;
    }

    public int totalBlocks() {
        return totalBlocks;
    }

    /** Bytes the pool's arrays hold. */
    public long bytes() {
        return (long) blockSize * totalBlocks * layout.bytesPerToken();
    }

    float[] keys(int layer) {
        return require(keys, "f32")[layer];
    }

    float[] values(int layer) {
        return require(values, "f32")[layer];
    }

    short[] keysBf16(int layer) {
        return require(keys16, "bf16")[layer];
    }

    short[] valuesBf16(int layer) {
        return require(values16, "bf16")[layer];
    }

    private <T> T require(T arrays, String dtype) {
        if (arrays == null) {
            throw new UnsupportedOperationException("this KV pool stores " + layout.dtype() + ", not " + dtype);
        }
        return arrays;
    }
}
