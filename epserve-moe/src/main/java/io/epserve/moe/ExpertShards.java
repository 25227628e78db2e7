package io.epserve.moe;

import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReferenceArray;

/**
 * Expert sharding: each expert's intermediate dimension split into K slices held by K
 * different workers. Shard s of an expert holds gate/up rows {@code [a, b)} and the matching
 * down columns, and computes {@code down[:, a:b] · (silu(gate[a:b] x) ⊙ up[a:b] x)}; the K
 * partial sums add up to the expert's output (SwiGLU is elementwise over the intermediate
 * dimension, so the split is exact up to float rounding).
 *
 * <p>Shards travel as <em>virtual experts</em>: shard s of expert e is expert {@code e·K + s} of
 * a model with E·K experts, so routing, dispatch, workers and combine need nothing new:
 * {@link #expand} turns the router's choice of e into K choices with the same weight, and
 * {@link #store} serves the shards' weights.
 * <pre>
 *   expert e:   gate [I, H]   up [I, H]   down [H, I]
 *   shard s:    gate [a:b, H] up [a:b, H] down [H, a:b]   a = s·I/K, b = (s+1)·I/K
 * </pre>
 * gate and up slices are views of the checkpoint; the down slice is strided in the stored
 * matrix, so it is copied once into memory of its own (1/K of the expert's down matrix).
 */
public final class ExpertShards {
    private ExpertShards() {}

    /** The router's choices of real experts as choices of virtual (expert, shard) experts. */
    public static RoutingResult expand(RoutingResult r, int shards) {
        if (shards == 1) {
            return r;
        }
        return expand(r, shards, new RoutingBuffers());
    }

    /**
     * {@link #expand(RoutingResult, int)} into reusable buffers (valid until their next use); the
     * routing itself when {@code shards == 1}.
     */
    public static RoutingResult expand(RoutingResult r, int shards, RoutingBuffers into) {
        if (shards == 1) {
            return r;
        }
        int k = r.k() * shards;
        int[] experts = into.experts(r.tokens() * k);
        float[] weights = into.weights(r.tokens() * k);
        for (int t = 0; t < r.tokens(); t++) {
            for (int j = 0; j < r.k(); j++) {
                for (int s = 0; s < shards; s++) {
                    experts[t * k + j * shards + s] = r.expert(t, j) * shards + s;
                    weights[t * k + j * shards + s] = r.weight(t, j);
                }
            }
        }
        return into.result(r.tokens(), k);
    }

    /** The weights of shard s of K of an expert. */
    public static ExpertWeights shard(ExpertWeights w, int s, int shards) {
        int inter = w.intermediate();
        if (shards < 1 || shards > inter) {
            throw new IllegalArgumentException("cannot split an intermediate size of " + inter + " into " + shards + " shards");
        }
        if (shards > 1 && w.hasBias()) {
            // the down bias would be added once per shard
            throw new IllegalArgumentException("experts with biases (gpt-oss) cannot be split into shards");
        }
        long a = (long) s * inter / shards;
        long b = (long) (s + 1) * inter / shards;
        return new ExpertWeights(w.gate().rowSlice(a, b), w.up().rowSlice(a, b), columns(w.down(), a, b), null, null, null,
                w.activation());
    }

    /**
     * Columns [a, b) of a 2-D tensor, copied into a contiguous tensor of its own. Block-quantized
     * rows (Q8_0, Q4_0, Q4_K) are sliced at whole blocks, which stay bit-identical; a cut inside
     * a block is refused with a message that says which shard counts fit.
     */
    static Tensor columns(Tensor t, long a, long b) {
        int rows = t.rows();
        long cols = t.cols();
        DType dt = t.dtype();
        if (dt.quantized() && (a % dt.blockSize() != 0 || b % dt.blockSize() != 0)) {
            throw new IllegalArgumentException("cannot shard " + t.name() + " (" + dt + ", blocks of " + dt.blockSize()
                    + " weights along its " + cols + " columns): shard columns " + a + ".." + b + " cut a block; choose a shard count K"
                    + " for which " + cols + " / K is a multiple of " + dt.blockSize());
        }
        long rowBytes = dt.bytesFor(cols);
        long offset = dt.bytesFor(a);
        long width = dt.bytesFor(b - a);
        MemorySegment out = Arena.ofAuto().allocate(rows * width, 64);
        for (long r = 0; r < rows; r++) {
            MemorySegment.copy(t.data(), r * rowBytes + offset, out, r * width, width);
        }
        return new Tensor(t.name() + "[:, " + a + ":" + b + "]", out, dt, new long[] {rows, b - a});
    }

    /** Virtual expert v = e·K + s of a sharded model: shard s of expert e of {@code base}, built once. */
    public static ExpertStore store(ExpertStore base, int layers, int numExperts, int shards) {
        ExpertWeights[][] cache = new ExpertWeights[layers][numExperts * shards];
        return (layer, v) -> {
            ExpertWeights w = cache[layer][v];
            if (w == null) {
                synchronized (cache) {
                    w = cache[layer][v];
                    if (w == null) {
                        w = shard(base.expert(layer, v / shards), v % shards, shards);
                        cache[layer][v] = w;
                    }
                }
            }
            return w;
        };
    }

    /**
     * A dispatcher over virtual experts seen as one over real experts: expands each routing into
     * its shards and hands it to {@code inner}, whose placement spreads the K shards of an expert
     * over K different workers ({@link ExpertPlacement#createSharded}). The expanded routings live
     * in a few reusable buffers, each taken for one dispatch and given back when it completes, so
     * steady-state dispatch allocates nothing here.
     */
    public static ExpertDispatcher dispatcher(ExpertDispatcher inner, int shards) {
        return new ShardedDispatcher(inner, shards);
    }

    private static final class ShardedDispatcher implements ExpertDispatcher {
        /** Enough for two-batch overlap (two dispatches in flight) with room to spare. */
        private static final int POOLED = 4;
        private final ExpertDispatcher inner;
        private final int shards;
        private final AtomicReferenceArray<RoutingBuffers> pool =
                new AtomicReferenceArray<>(POOLED);

        ShardedDispatcher(ExpertDispatcher inner, int shards) {
            this.inner = inner;
            this.shards = shards;
        }

        private RoutingBuffers take() {
            for (int i = 0; i < POOLED; i++) {
                RoutingBuffers b = pool.getAndSet(i, null);
                if (b != null) {
                    return b;
                }
            }
            return new RoutingBuffers();
        }

        private void give(RoutingBuffers b) {
            for (int i = 0; i < POOLED; i++) {
                if (pool.compareAndSet(i, null, b)) {
                    return;
                }
            }
        }

        @Override
        public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
            RoutingBuffers b = take();
            inner.dispatch(layer, hidden, hiddenSize, expand(routing, shards, b), out);
            give(b);
        }

        @Override
        public CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize,
                                                                        RoutingResult routing, float[] out) {
            RoutingBuffers b = take();
            CompletableFuture<Void> f = inner.dispatchAsync(layer, hidden, hiddenSize,
                    expand(routing, shards, b), out);
            if (f.isDone()) {
                give(b);
            } else {
                // the inner dispatcher may read the expanded routing until it completes
                f.whenComplete((v, e) -> give(b));
            }
            return f;
        }

        @Override
        public void close() {
            inner.close();
        }
    }
}
