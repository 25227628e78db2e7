package io.epserve.moe;

import java.util.concurrent.CompletableFuture;

/**
 * Dispatch and combine for one MoE layer (DESIGN.md §3.7): sends each token to the experts the
 * router chose and adds their outputs back, weighted. Implementations: in-process now, gRPC to
 * expert workers later; both must give the same numbers.
 */
public interface ExpertDispatcher extends AutoCloseable {

    /**
     * {@code out[t] = Σ_j weight(t, j) · expert(t, j)(hidden[t])} for each token t of the routing
     * result; rows of {@code hidden} and {@code out} are {@code hiddenSize} long. Overwrites out.
     * Slots are added in ascending expert id, so the sum does not depend on where or in which
     * order the experts ran.
     */
    void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out);

    /**
     * Starts {@link #dispatch} and returns at once where the transport allows (remote workers), so
     * the caller can compute something else meanwhile (two-batch overlap); {@code out} is complete
     * when the future is. The default runs synchronously. hidden and out must not be touched until
     * then.
     */
    default CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize,
                                                                     RoutingResult routing, float[] out) {
        try {
            dispatch(layer, hidden, hiddenSize, routing, out);
            return CompletableFuture.completedFuture(null);
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        }
    }

    @Override
    default void close() {}
}
