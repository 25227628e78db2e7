package io.epserve.engine;

/**
 * Receives a request's output, called from the engine thread: keep it quick (hand off to the
 * connection's own thread or queue). After {@link #onFinish} or {@link #onError} nothing more is
 * called.
 */
public interface TokenListener {
    void onToken(int token);

    void onFinish(FinishReason reason, int promptTokens, int generatedTokens);

    /** The request failed (a worker died mid-step, ...); the message names the cause. */
    void onError(RuntimeException error);
}
