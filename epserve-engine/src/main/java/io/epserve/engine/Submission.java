package io.epserve.engine;

/**
 * The outcome of submitting a request: expected outcomes are values, not exceptions
 * (DESIGN.md §3.12). A server maps them to HTTP statuses.
 */
public sealed interface Submission {
    /** Accepted: output will arrive through the listener. */
    record Accepted(RequestHandle handle) implements Submission {}

    /** The waiting queue is full: try again after {@code retryAfterSeconds} (HTTP 429). */
    record QueueFull(int waiting, int retryAfterSeconds) implements Submission {}

    /** Prompt + max tokens exceed what the model or the KV pool can ever hold (HTTP 413 / 400). */
    record TooLong(int requested, int limit) implements Submission {}

    /** The engine is not ready or is shutting down (HTTP 503). */
    record NotReady(String why) implements Submission {}
}
