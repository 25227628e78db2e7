package io.epserve.engine;

/**
 * A step of the model failed (an expert worker died, a transport error, ...): the requests of
 * that step are failed with this, their KV blocks freed, and the engine goes on with the next
 * requests. A server answers it as a server-side error (HTTP 500/502), not the client's fault.
 */
public final class StepFailedException extends RuntimeException {
    public StepFailedException(String message, Throwable cause) {
        super(message, cause);
    }
}
