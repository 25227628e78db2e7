package io.epserve.engine.scheduler;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The continuous-batching scheduler: a pure state machine over sequence ids and token counts
 * (DESIGN.md §3.6; it imports no tensor, model or network code and is tested with integers).
 *
 * <p>A sequence is a prompt plus the tokens generated so far ({@code tokens}); {@code computed}
 * of them are in its KV cache. Each {@link #schedule()} gives every chosen sequence a chunk of
 * its not-yet-computed tokens (a decode is the one token sampled last step; a prefill chunk is
 * part of a prompt, or of prompt + generated tokens being recomputed after preemption), as in
 * vLLM v1's scheduler, where prefill and decode are one thing: "tokens to compute". The engine
 * then runs the step, samples a token for each chunk that {@link BatchPlan.Chunk#samples()},
 * and reports it with {@link #append} or ends the sequence with {@link #finish}.
 *
 * <p>One schedule, under a token budget ({@code maxBatchTokens}) and {@code maxRunning}:
 * <ol>
 *   <li>cancelled sequences are removed and their blocks freed;</li>
 *   <li>decodes of running sequences, in admission order (oldest first): a decode never waits
 *       behind a long prompt (chunked prefill, decodes first, as Sarathi-Serve);</li>
 *   <li>prefill chunks of running sequences, in admission order, as much of the rest of the
 *       budget as they need;</li>
 *   <li>waiting sequences join, first come first served, while the budget, {@code maxRunning}
 *       and free blocks allow, unless this schedule preempted someone.</li>
 * </ol>
 * KV blocks are reserved for exactly the positions a chunk writes. A running sequence that
 * cannot get a single block preempts the most recently admitted running sequence (never an
 * older one): that sequence's blocks are freed and it goes back to the <em>front</em> of the
 * waiting queue, to be recomputed from its prompt and the tokens it generated (recompute, not
 * swap, as vLLM). The oldest running sequence can therefore always progress, since a sequence
 * that fits the pool on its own is checked at {@link #submit}.
 *
 * <p>Not thread-safe: the engine calls it under its lock.
 */
public final class Scheduler {

    private static final class Seq {
        final long id;
        final int promptTokens;
        final int maxTokens;
        final BlockTable table = new BlockTable();
        /** Prompt + generated tokens known so far. */
        int tokens;
        /** Tokens whose keys/values are (scheduled to be) in the cache. */
        int computed;
        boolean running;
        boolean cancelled;

        Seq(long id, int promptTokens, int maxTokens) {
            this.id = id;
            this.promptTokens = promptTokens;
            this.maxTokens = maxTokens;
            this.tokens = promptTokens;
        }

        int remaining() {
            return tokens - computed;
        }

        boolean isDecode() {
            return remaining() == 1 && tokens > promptTokens;
        }
    }

    /** A sequence's share of the step being planned. */
    private static final class Planned {
        final Seq seq;
        final int count;

        Planned(Seq seq, int count) {
            this.seq = seq;
            this.count = count;
        }
    }

    private final SchedulerConfig cfg;
    private final BlockAllocator allocator;
    private final Map<Long, Seq> sequences = new HashMap<>();
    private final ArrayDeque<Seq> waiting = new ArrayDeque<>();
    /** In admission order: the last is the most recently admitted, the first to be preempted. */
    private final ArrayList<Seq> running = new ArrayList<>();
    private final ArrayList<Seq> cancelRequests = new ArrayList<>();
    private long preemptions;

    public Scheduler(SchedulerConfig cfg) {
        this.cfg = cfg;
        this.allocator = new BlockAllocator(cfg.totalBlocks());
    }

    public SchedulerConfig config() {
        return cfg;
    }

    /**
     * Queues a new sequence of {@code promptTokens} that may generate up to {@code maxTokens}.
     * It needs room for prompt + max tokens positions: more than the model's context or the
     * whole pool is {@link Admission.TooLong} (it could never finish); a full waiting queue is
     * {@link Admission.QueueFull}.
     */
    public Admission submit(long id, int promptTokens, int maxTokens) {
        if (promptTokens < 1 || maxTokens < 1) {
            throw new IllegalArgumentException("a sequence needs a prompt and max tokens >= 1, got " + promptTokens + " and "
                    + maxTokens);
        }
        if (sequences.containsKey(id)) {
            throw new IllegalArgumentException("sequence " + id + " is already scheduled");
        }
        long requested = (long) promptTokens + maxTokens;
        long limit = Math.min(cfg.maxPositions(), cfg.poolPositions());
        if (requested > limit) {
            return new Admission.TooLong((int) Math.min(requested, Integer.MAX_VALUE), (int) limit);
        }
        if (waiting.size() >= cfg.maxWaiting()) {
            return new Admission.QueueFull(waiting.size());
        }
        Seq s = new Seq(id, promptTokens, maxTokens);
        sequences.put(id, s);
        waiting.addLast(s);
        return new Admission.Queued(waiting.size());
    }

    /** Marks a sequence cancelled: the next {@link #schedule()} removes it and frees its blocks. False if unknown. */
    public boolean cancel(long id) {
        Seq s = sequences.get(id);
        if (s == null || s.cancelled) {
            return false;
        }
        s.cancelled = true;
        cancelRequests.add(s);
        return true;
    }

    /** Ends a sequence now (stop token, length, error) and frees its blocks. False if unknown. */
    public boolean finish(long id) {
        Seq s = sequences.remove(id);
        if (s == null) {
            return false;
        }
        if (s.running) {
            running.remove(s);
        } else {
            waiting.remove(s);
        }
        s.table.freeAll(allocator);
        return true;
    }

    /** The step sampled the sequence's next token: it is known now and will be computed (decoded) next. */
    public void append(long id) {
        Seq s = require(id);
        if (s.remaining() != 0) {
            throw new IllegalStateException("sequence " + id + " has " + s.remaining() + " tokens left to compute: "
                    + "a token is appended only after a chunk that samples");
        }
        if (s.tokens - s.promptTokens >= s.maxTokens) {
            throw new IllegalStateException("sequence " + id + " already generated its " + s.maxTokens + " tokens");
        }
        s.tokens++;
    }

    /** Plans the next step (see the class comment). The plan may be empty when nothing can run. */
    public BatchPlan schedule() {
        List<Long> cancelled = new ArrayList<>();
        for (Seq s : cancelRequests) {
            if (sequences.get(s.id) == s && finish(s.id)) {
                cancelled.add(s.id);
            }
        }
        cancelRequests.clear();
        for (Seq s : running) {
            if (s.remaining() == 0) {
                throw new IllegalStateException("sequence " + s.id + " waits for its sampled token: call append or finish "
                        + "for every chunk that samples before the next schedule");
            }
        }

        List<Planned> planned = new ArrayList<>();
        List<Long> preempted = new ArrayList<>();
        int[] budget = {cfg.maxBatchTokens()};

        // 1. decodes, oldest first
        for (int i = 0; i < running.size() && budget[0] > 0; i++) {
            Seq s = running.get(i);
            if (s.isDecode()) {
                int n = reserve(s, i, 1, planned, preempted, budget);
                if (n > 0) {
                    planned.add(new Planned(s, n));
                    budget[0] -= n;
                }
            }
        }
        // 2. prefill chunks of running sequences, oldest first
        for (int i = 0; i < running.size() && budget[0] > 0; i++) {
            Seq s = running.get(i);
            if (!s.isDecode()) {
                int n = reserve(s, i, Math.min(s.remaining(), budget[0]), planned, preempted, budget);
                if (n > 0) {
                    planned.add(new Planned(s, n));
                    budget[0] -= n;
                }
            }
        }
        // 3. admissions, first come first served; none right after a preemption (it would thrash)
        while (preempted.isEmpty() && !waiting.isEmpty() && running.size() < cfg.maxRunning() && budget[0] > 0) {
            Seq s = waiting.peekFirst();
            int n = Math.min(Math.min(s.remaining(), budget[0]), capacity(s));
            if (n == 0) {
                break; // the head waits for blocks; later ones wait behind it, so big requests are not starved
            }
            waiting.pollFirst();
            s.running = true;
            running.add(s);
            allocateFor(s, s.computed + n);
            planned.add(new Planned(s, n));
            budget[0] -= n;
        }

        List<BatchPlan.Chunk> chunks = new ArrayList<>(planned.size());
        for (Planned p : planned) {
            Seq s = p.seq;
            boolean decode = s.isDecode();
            chunks.add(new BatchPlan.Chunk(s.id, s.computed, p.count, s.computed + p.count == s.tokens, decode));
            s.computed += p.count;
        }
        return new BatchPlan(chunks, preempted, cancelled);
    }

    /**
     * Reserves blocks for up to {@code want} more tokens of running sequence {@code s} (at
     * {@code index} in admission order) and returns how many it got. With no room at all, it
     * preempts the most recently admitted sequences after {@code s} (taking back their planned
     * tokens) until one block is free; with none left to preempt it gets 0 and waits.
     */
    private int reserve(Seq s, int index, int want, List<Planned> planned, List<Long> preempted, int[] budget) {
        while (capacity(s) == 0 && running.size() - 1 > index) {
            Seq victim = running.getLast();
            for (int j = 0; j < planned.size(); j++) {
                if (planned.get(j).seq == victim) {
                    budget[0] += planned.get(j).count;
                    planned.remove(j);
                    break;
                }
            }
            preempt(victim);
            preempted.add(victim.id);
        }
        int n = Math.min(want, capacity(s));
        if (n > 0) {
            allocateFor(s, s.computed + n);
        }
        return n;
    }

    private void preempt(Seq s) {
        running.remove(s);
        s.running = false;
        s.table.freeAll(allocator);
        s.computed = 0;
        waiting.addFirst(s);
        preemptions++;
    }

    /** Tokens the sequence can still write: the rest of its last block plus every free block. */
    private int capacity(Seq s) {
        long room = (long) s.table.size() * cfg.blockSize() - s.computed + (long) allocator.free() * cfg.blockSize();
        return (int) Math.min(room, Integer.MAX_VALUE);
    }

    private void allocateFor(Seq s, int positions) {
        int needed = (positions + cfg.blockSize() - 1) / cfg.blockSize();
        while (s.table.size() < needed) {
            int b = allocator.allocate();
            if (b == BlockAllocator.NONE) {
                throw new IllegalStateException("block pool exhausted while reserving " + positions + " positions for sequence "
                        + s.id + " (capacity was checked)");
            }
            s.table.add(b);
        }
    }

    private Seq require(long id) {
        Seq s = sequences.get(id);
        if (s == null) {
            throw new IllegalArgumentException("no sequence " + id);
        }
        return s;
    }

    public boolean hasWork() {
        return !running.isEmpty() || !waiting.isEmpty();
    }

    public boolean contains(long id) {
        return sequences.containsKey(id);
    }

    public boolean isRunning(long id) {
        Seq s = sequences.get(id);
        return s != null && s.running;
    }

    /** The sequence's KV blocks; the same object for its whole life (emptied when preempted or ended). */
    public BlockTable blockTable(long id) {
        return require(id).table;
    }

    /** Tokens known (prompt + generated). */
    public int tokens(long id) {
        return require(id).tokens;
    }

    /** Tokens in (or scheduled into) the KV cache. */
    public int computed(long id) {
        return require(id).computed;
    }

    public int running() {
        return running.size();
    }

    public int waiting() {
        return waiting.size();
    }

    /** Running sequence ids in admission order. */
    public List<Long> runningIds() {
        return running.stream().map(s -> s.id).toList();
    }

    /** Waiting sequence ids, next to be admitted first. */
    public List<Long> waitingIds() {
        return waiting.stream().map(s -> s.id).toList();
    }

    public int blocksUsed() {
        return allocator.used();
    }

    public int blocksTotal() {
        return allocator.total();
    }

    public int blockSize() {
        return cfg.blockSize();
    }

    public long preemptions() {
        return preemptions;
    }
}
