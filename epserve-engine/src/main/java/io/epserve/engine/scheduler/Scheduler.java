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
 * <p><b>Prefix caching.</b> A sequence submitted with its prompt's token ids
 * ({@link #submit(long, int[], int)}) shares full KV blocks with earlier prompts: at admission
 * the longest run of cached full prompt blocks (same tokens after the same prefix, see
 * {@link BlockAllocator}) joins its block table and counts as computed, so the first chunk
 * starts after them (at least one prompt token is always computed, so the step samples); after
 * each step the full prompt blocks it computed are registered for later prompts. Shared blocks
 * are only read: a sequence writes positions from {@code computed} on, which lie past them.
 * The model computes each position's keys and values the same whatever the chunking (the
 * kernels give every token the same bits in any batch), so a hit changes no output bit.
 *
 * <p>Not thread-safe: the engine calls it under its lock.
 */
public final class Scheduler {

    private static final class Seq {
        final long id;
        final int promptTokens;
        /** The prompt's token ids when prefix caching applies to it, else null. */
        final int[] prompt;
        /** Leading blocks of the table that are registered in (or were taken from) the prefix cache. */
        int cachedBlocks;
        /** A block of this prompt was computed twice at once and is not the cached copy: stop registering. */
        boolean cacheChainBroken;
        final int maxTokens;
        final BlockTable table = new BlockTable();
        /** Prompt + generated tokens known so far. */
        int tokens;
        /** Tokens whose keys/values are (scheduled to be) in the cache. */
        int computed;
        boolean running;
        boolean cancelled;

        Seq(long id, int promptTokens, int[] prompt, int maxTokens) {
            this.id = id;
            this.promptTokens = promptTokens;
            this.prompt = prompt;
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
    private long prefixQueriedTokens;
    private long prefixHitTokens;

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
        return submit(id, promptTokens, null, maxTokens);
    }

    /**
     * {@link #submit(long, int, int)} for a prompt whose token ids are known, so that its full
     * blocks are shared through the prefix cache. The array is read, never changed; the caller
     * must not change it while the sequence lives.
     */
    public Admission submit(long id, int[] prompt, int maxTokens) {
        return submit(id, prompt.length, prompt, maxTokens);
    }

    private Admission submit(long id, int promptTokens, int[] prompt, int maxTokens) {
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
        Seq s = new Seq(id, promptTokens, prompt, maxTokens);
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

    /**
     * Ends a sequence now (stop token, length, error, cancel) and frees its blocks; the full
     * prompt blocks it computed stay in the prefix cache. False if unknown. Call only between
     * steps that completed: after a step that threw, use {@link #abort}.
     */
    public boolean finish(long id) {
        return end(id, true);
    }

    /**
     * Ends a sequence whose last step failed: its blocks are freed and none of the positions that
     * step was to write is cached (they hold nothing valid). False if unknown.
     */
    public boolean abort(long id) {
        return end(id, false);
    }

    private boolean end(long id, boolean stepsCompleted) {
        Seq s = sequences.remove(id);
        if (s == null) {
            return false;
        }
        if (s.running) {
            running.remove(s);
            if (stepsCompleted) {
                registerComputedPromptBlocks(s);
            }
        } else {
            waiting.remove(s);
        }
        releaseBlocks(s);
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
        registerComputedPromptBlocks(s);
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
            registerComputedPromptBlocks(s);
        }

        List<Planned> planned = new ArrayList<>();
        List<Long> preempted = new ArrayList<>();
        List<BatchPlan.Reuse> reused = new ArrayList<>();
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
            int hit = takeCachedPrefix(s);
            int n = Math.min(Math.min(s.remaining(), budget[0]), capacity(s));
            if (n == 0) {
                releaseBlocks(s);
                break; // the head waits for blocks; later ones wait behind it, so big requests are not starved
            }
            if (s.prompt != null) {
                prefixQueriedTokens += s.promptTokens;
                prefixHitTokens += hit;
                if (hit > 0) {
                    reused.add(new BatchPlan.Reuse(s.id, hit));
                }
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
        return new BatchPlan(chunks, preempted, cancelled, reused);
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
        releaseBlocks(s);
        waiting.addFirst(s);
        preemptions++;
    }

    /** Drops the sequence's blocks (cached ones stay in the cache for the next taker) and its progress. */
    private void releaseBlocks(Seq s) {
        s.table.freeAll(allocator);
        s.computed = 0;
        s.cachedBlocks = 0;
        s.cacheChainBroken = false;
    }

    /**
     * At admission: puts the longest run of cached full prompt blocks into the sequence's table
     * and counts them as computed. Leaves at least the prompt's last token to compute, so the
     * first chunk samples. Returns the tokens reused.
     */
    private int takeCachedPrefix(Seq s) {
        if (s.prompt == null || s.computed != 0 || s.table.size() != 0) {
            return 0;
        }
        int b = cfg.blockSize();
        int parent = BlockAllocator.NONE;
        int blocks = 0;
        while ((blocks + 1) * b <= s.promptTokens - 1) {
            int id = allocator.lookup(parent, s.prompt, blocks * b, b);
            if (id == BlockAllocator.NONE) {
                break;
            }
            allocator.acquire(id);
            s.table.add(id);
            parent = id;
            blocks++;
        }
        s.cachedBlocks = blocks;
        s.computed = blocks * b;
        return s.computed;
    }

    /** After a step: the prompt's full blocks whose keys and values are now in the cache become shareable. */
    private void registerComputedPromptBlocks(Seq s) {
        if (s.prompt == null || s.cacheChainBroken) {
            return;
        }
        int b = cfg.blockSize();
        int full = Math.min(s.computed, s.promptTokens) / b;
        while (s.cachedBlocks < full) {
            int i = s.cachedBlocks;
            int parent = i == 0 ? BlockAllocator.NONE : s.table.block(i - 1);
            if (!allocator.register(s.table.block(i), parent, s.prompt, i * b, b)) {
                s.cacheChainBroken = true;
                return;
            }
            s.cachedBlocks++;
        }
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

    /** Prompt tokens of admitted sequences that were looked up in the prefix cache. */
    public long prefixQueriedTokens() {
        return prefixQueriedTokens;
    }

    /** Of those, the tokens whose KV blocks were reused from the cache. */
    public long prefixHitTokens() {
        return prefixHitTokens;
    }

    /** Starts the preemption and prefix-cache counters from zero (the cache's blocks stay). */
    public void resetCounters() {
        preemptions = 0;
        prefixQueriedTokens = 0;
        prefixHitTokens = 0;
    }

    /** KV blocks currently holding a cached prompt block (in use or evictable). */
    public int prefixCachedBlocks() {
        return allocator.cached();
    }
}
