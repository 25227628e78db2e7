package io.epserve.engine;

/** The engine closed (or stopped) before the request finished. */
public final class EngineClosedException extends IllegalStateException {
    public EngineClosedException(String message) {
        super(message);
    }

    public EngineClosedException(String message, Throwable cause) {
        super(message, cause);
    }
}
