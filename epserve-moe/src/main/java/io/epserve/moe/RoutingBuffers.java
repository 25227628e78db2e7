package io.epserve.moe;

/**
 * Reusable memory for a router's output and scratch (DESIGN.md §3.4: the hot path allocates
 * nothing): {@link Router#route(float[], int[], int, RoutingBuffers)} writes the chosen experts
 * and weights into arrays held here and returns a {@link RoutingResult} over them, the same
 * record object as last time when the shape (tokens, k) did not change. Arrays grow when a
 * larger batch arrives and are never shrunk.
 *
 * <p>The result is valid until the next call that routes into the same buffers: whoever keeps a
 * routing beyond that must copy it. One buffer per concurrent user (not thread-safe); a
 * transformer keeps one per micro-batch, so the routing of a micro-batch whose dispatch is in
 * flight is not overwritten by the other's.
 */
public final class RoutingBuffers {
    private int[] experts = new int[0];
    private float[] weights = new float[0];
    private RoutingResult result;
    // router scratch: per-token work arrays, sized per router
    private float[] f0 = new float[0];
    private float[] f1 = new float[0];
    private float[] f2 = new float[0];
    private int[] i0 = new int[0];
    private boolean[] b0 = new boolean[0];

    /** The expert ids array, at least {@code size} long (grown exactly to size when shorter). */
    int[] experts(int size) {
        if (experts.length < size) {
            experts = new int[size];
        }
        return experts;
    }

    float[] weights(int size) {
        if (weights.length < size) {
            weights = new float[size];
        }
        return weights;
    }

    /**
     * The routing of {@code tokens × k} over the arrays last returned by {@link #experts} and
     * {@link #weights}: the previous record when it has that shape over those arrays, else a new one.
     */
    RoutingResult result(int tokens, int k) {
        RoutingResult r = result;
        if (r == null || r.tokens() != tokens || r.k() != k || r.experts() != experts || r.weights() != weights) {
            r = new RoutingResult(tokens, k, experts, weights);
            result = r;
        }
        return r;
    }

    float[] scratch0(int size) {
        if (f0.length < size) {
            f0 = new float[size];
        }
        return f0;
    }

    float[] scratch1(int size) {
        if (f1.length < size) {
            f1 = new float[size];
        }
        return f1;
    }

    float[] scratch2(int size) {
        if (f2.length < size) {
            f2 = new float[size];
        }
        return f2;
    }

    int[] intScratch(int size) {
        if (i0.length < size) {
            i0 = new int[size];
        }
        return i0;
    }

    boolean[] flags(int size) {
        if (b0.length < size) {
            b0 = new boolean[size];
        }
        return b0;
    }
}
