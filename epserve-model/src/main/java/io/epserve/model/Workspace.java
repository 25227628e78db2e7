package io.epserve.model;

import io.epserve.moe.RoutingBuffers;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;

/**
 * The working memory of one {@link MoeTransformer} step (DESIGN.md §3.4: preallocated state):
 * activations, attention scratch, router logits and routings, expert outputs and the step's
 * flattened token arrays. Every buffer grows when a larger step arrives and is never shrunk, so
 * steady-state steps allocate nothing. Sizes are in floats (ints) and only the prefix a step
 * needs is read.
 * <pre>
 *   step (n tokens)     tokens, pos, cacheOf [n]   x [n × hidden]   sel [rows × hidden]
 *   micro-batch A, B    xn, delta, shared [m × hidden]   router logits [m × E]   routing per layer
 *   shared, sync only   q, k, v, attn, MLA projections   attention scores / rows   SwiGLU scratch
 * </pre>
 * Each micro-batch has buffers of its own because its expert dispatch may still be in flight
 * (reading {@code xn}, writing {@code delta}, possibly on a transport thread) while the other
 * micro-batch computes; the attention and SwiGLU scratch is used only synchronously, by one
 * micro-batch at a time, and is shared. Not thread-safe: one step at a time per workspace.
 */
final class Workspace {
    int n;
    int[] tokens = new int[0];
    int[] pos = new int[0];
    KvCache[] cacheOf = new KvCache[0];
    float[] x = new float[0];
    float[] sel = new float[0];

    final MicroBatch[] batches = {new MicroBatch(), new MicroBatch()};

    // attention scratch (GQA and MLA), used by one micro-batch at a time
    float[] q = new float[0];
    float[] k = new float[0];
    float[] v = new float[0];
    float[] attn = new float[0];
    float[] qa = new float[0];
    float[] kva = new float[0];
    float[] latent = new float[0];
    float[] kv = new float[0];
    /** Compressed MLA: absorbed queries and per-head gathers. */
    float[] qAbs = new float[0];
    float[] gatherIn = new float[0];
    float[] gatherOut = new float[0];
    float[] scores = new float[0];
    int[] rows = new int[0];
    /** Dense FFN and shared-expert SwiGLU scratch ({@code 2 × m × intermediate}). */
    float[] swiglu = new float[0];

    /** Rows [from, from + n) of the step, with their own buffers and in-flight dispatch. */
    static final class MicroBatch {
        int from;
        int n;
        float[] xn = new float[0];
        float[] delta = new float[0];
        float[] shared = new float[0];
        float[] sharedGate = new float[0];
        float[] routerLogits = new float[0];
        int[] tokens = new int[0];
        /** Per layer, so that a listener may keep a layer's routing until the end of the step. */
        private RoutingBuffers[] routing = new RoutingBuffers[0];
        CompletableFuture<Void> inFlight;
        /** The shared expert's output waits in {@link #shared} to be added once the dispatch is done. */
        boolean hasShared;

        void reset(int from, int to, int hidden) {
            this.from = from;
            this.n = to - from;
            xn = floats(xn, n * hidden);
            delta = floats(delta, n * hidden);
            inFlight = null;
            hasShared = false;
        }

        RoutingBuffers routing(int layer) {
            if (layer >= routing.length) {
                routing = Arrays.copyOf(routing, layer + 1);
            }
            RoutingBuffers b = routing[layer];
            if (b == null) {
                b = new RoutingBuffers();
                routing[layer] = b;
            }
            return b;
        }

        /** Cancels an in-flight dispatch; returns whether there was one (its buffers may still be written). */
        boolean abandon() {
            CompletableFuture<Void> f = inFlight;
            inFlight = null;
            if (f != null) {
                f.cancel(true);
                return true;
            }
            return false;
        }
    }

    /** Sizes the step arrays for n tokens. */
    void resetStep(int n, int hidden) {
        this.n = n;
        tokens = ints(tokens, n);
        pos = ints(pos, n);
        if (cacheOf.length < n) {
            cacheOf = new KvCache[n];
        }
        x = floats(x, n * hidden);
    }

    /** Drops the step's cache references so that the workspace does not keep finished sequences alive. */
    void clearCaches() {
        Arrays.fill(cacheOf, 0, n, null);
    }

    static float[] floats(float[] a, int size) {
        return a.length >= size ? a : new float[size];
    }

    static int[] ints(int[] a, int size) {
        return a.length >= size ? a : new int[size];
    }

    /** For buffers that grow by one row per step (attention over the cached positions): doubling. */
    static float[] growing(float[] a, int size) {
        return a.length >= size ? a : new float[Math.max(size, Math.max(64, a.length * 2))];
    }

    static int[] growing(int[] a, int size) {
        return a.length >= size ? a : new int[Math.max(size, Math.max(64, a.length * 2))];
    }
}
