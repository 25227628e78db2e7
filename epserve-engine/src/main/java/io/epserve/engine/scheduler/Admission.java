package io.epserve.engine.scheduler;

/** What {@link Scheduler#submit} decided about a new sequence. */
public sealed interface Admission {
    /** Queued: it will join the running batch when blocks and the token budget allow. */
    record Queued(int waiting) implements Admission {}

    /** The waiting queue already holds its maximum of {@code waiting} sequences. */
    record QueueFull(int waiting) implements Admission {}

    /** Prompt + max tokens ({@code requested} positions) exceed {@code limit}: the pool or the model's context. */
    record TooLong(int requested, int limit) implements Admission {}
}
