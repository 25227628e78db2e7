package io.epserve.moe;

/**
 * Turns router logits ({@code [tokens, E]}, from the gate's linear layer) into a
 * {@link RoutingResult}. Variants are a sealed family, never flags (DESIGN.md §3.7).
 */
public sealed interface Router permits SoftmaxTopKRouter, GroupedSigmoidRouter, GroupedSoftmaxRouter, TopKSoftmaxRouter, HashRouter {

    int numExperts();

    int k();

    /** Whether this router reads the gate's logits (a hash router does not). */
    default boolean needsLogits() {
        return true;
    }

    /**
     * Routes {@code tokens} tokens. {@code logits} holds {@code tokens * numExperts()} router logits
     * (ignored by routers that do not need them); {@code tokenIds} the input token ids (used by
     * the hash router).
     */
    RoutingResult route(float[] logits, int[] tokenIds, int tokens);

    /**
     * As {@link #route(float[], int[], int)}, with the result and the router's scratch in
     * {@code into}: allocates nothing once the buffers have grown to the batch. The result is
     * valid until the next routing into the same buffers (see {@link RoutingBuffers}); the
     * numbers are the same as {@link #route(float[], int[], int)}'s.
     */
    default RoutingResult route(float[] logits, int[] tokenIds, int tokens, RoutingBuffers into) {
        return route(logits, tokenIds, tokens);
    }
}
