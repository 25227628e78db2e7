package io.epserve.engine;

import io.epserve.moe.RoutingResult;

/**
 * What the engine reports as it runs, for metrics and the live view. Called from the engine
 * thread: implementations must be quick and thread-safe for readers on other threads.
 */
public interface EngineObserver {
    /** A step ran: how many sequences and tokens it held (prefill + decode), and how long it took. */
    default void onStep(int sequences, int prefillTokens, int decodeTokens, long nanos) {}

    /** A sparse layer's routing of one step (per-(layer, expert) token counts, imbalance). */
    default void onRouting(int layer, RoutingResult routing) {}

    /** A request produced its first token, {@code nanos} after it was submitted. */
    default void onFirstToken(String requestId, long nanos) {}

    /** A request ended: how, its token counts, and its end-to-end time. */
    default void onFinish(String requestId, FinishReason reason, int promptTokens, int generatedTokens, long nanos) {}

    /** A request failed. */
    default void onError(String requestId, RuntimeException error) {}

    /** A running sequence was preempted (its KV blocks freed; it will be recomputed). */
    default void onPreempt(String requestId) {}
}
