package io.epserve.engine.scheduler;

import java.util.List;

/**
 * What one step runs, as {@link Scheduler#schedule()} decided it: a value, read only after
 * (DESIGN.md §3.5).
 *
 * @param chunks    the sequences of the step, each with the tokens it runs; decodes first
 * @param preempted sequences whose blocks were freed this schedule; they wait to be recomputed
 * @param cancelled cancelled sequences removed (and their blocks freed) this schedule
 * @param reused    sequences admitted this schedule that start with cached prompt blocks: their
 *                  first chunk starts after the positions those blocks hold
 */
public record BatchPlan(List<Chunk> chunks, List<Long> preempted, List<Long> cancelled, List<Reuse> reused) {
    public BatchPlan {
        chunks = List.copyOf(chunks);
        preempted = List.copyOf(preempted);
        cancelled = List.copyOf(cancelled);
        reused = List.copyOf(reused);
    }

    /** A plan with no reused prefix. */
    public BatchPlan(List<Chunk> chunks, List<Long> preempted, List<Long> cancelled) {
        this(chunks, preempted, cancelled, List.of());
    }

    /** Sequence {@code sequence}'s first {@code positions} positions are cached blocks of another prompt's. */
    public record Reuse(long sequence, int positions) {}

    /**
     * One sequence's part of the step: its tokens {@code [start, start + count)} (prompt and
     * then generated tokens, counted from 0), continuing the {@code start} positions already in
     * its KV cache.
     *
     * @param samples whether the chunk reaches the sequence's last known token, so the step's
     *                logits of that token choose the next one
     * @param decode  whether it is a decode: the one token generated last step (a prefill chunk,
     *                also a recompute after preemption, is not)
     */
    public record Chunk(long sequence, int start, int count, boolean samples, boolean decode) {}

    public boolean isEmpty() {
        return chunks.isEmpty();
    }

    public int tokens() {
        int n = 0;
        for (Chunk c : chunks) {
            n += c.count();
        }
        return n;
    }

    public int decodeTokens() {
        int n = 0;
        for (Chunk c : chunks) {
            n += c.decode() ? c.count() : 0;
        }
        return n;
    }

    public int prefillTokens() {
        return tokens() - decodeTokens();
    }
}
