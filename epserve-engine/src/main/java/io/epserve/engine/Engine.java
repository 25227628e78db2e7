package io.epserve.engine;

import io.epserve.engine.kv.KvBlockPool;
import io.epserve.engine.kv.PagedKvCache;
import io.epserve.engine.scheduler.Admission;
import io.epserve.engine.scheduler.BatchPlan;
import io.epserve.engine.scheduler.Scheduler;
import io.epserve.engine.scheduler.SchedulerConfig;
import io.epserve.model.ModelConfig;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.model.StepLogits;
import io.epserve.model.sampling.Sampler;
import io.epserve.moe.RoutingResult;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.random.RandomGenerator;

/**
 * The serving loop: continuous batching over one {@link MoeTransformer}, with a paged KV cache.
 *
 * <p>One engine thread runs steps while there is work and sleeps on a condition when there is
 * none. A step is:
 * <pre>
 *   plan = scheduler.schedule()                  which sequences, how many tokens each (pure)
 *   logits = model.step(chunks of the plan)      one forward pass, one dispatch per MoE layer
 *   for each chunk that reached its last token:  sample with the sequence's own random state,
 *                                                emit, then append or finish it
 * </pre>
 * Batch invariance: a token's logits do not depend on the rest of its step (the kernels give
 * that), and each sequence samples from its own {@link RandomGenerator}, so a request gives
 * token for token the same output alone or among others, chunked or not, preempted or not. A
 * preempted sequence is recomputed from its prompt and the tokens it already emitted; its
 * random state is kept, and the tokens it already emitted are not sent again.
 *
 * <p>Callbacks ({@link TokenListener}, {@link EngineObserver}) run on the engine thread: they
 * must be quick. Observers hear of a step, a finish or an error before the request's listener
 * does, so whoever sees a request end also sees it counted. A callback that throws is logged and
 * does not stop the engine (a listener that throws from onToken fails its request). Thread-safe: {@link #submit}, {@link #stats}, {@link #ready},
 * {@link #addObserver}, {@link #close} and the handles' cancel/finish may be called from any
 * thread. The engine does not own the transformer: closing the engine leaves it open.
 */
public final class Engine implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Engine.class.getName());

    private final MoeTransformer model;
    private final ModelConfig modelConfig;
    private final EngineConfig config;
    private final KvBlockPool pool;
    private final Scheduler scheduler;
    private final Sampler sampler;
    /** The logits of the last step, reused step after step (the engine thread only). */
    private final StepLogits stepLogits = new StepLogits();
    private final List<EngineObserver> observers = new CopyOnWriteArrayList<>();
    private final RoutingListener routing = this::forwardRouting;

    /** Guards the scheduler and the lifecycle flags; never held during a model step or a callback. */
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition wake = lock.newCondition();
    private final Map<Long, Request> requests = new ConcurrentHashMap<>();
    private final ConcurrentLinkedQueue<Control> controls = new ConcurrentLinkedQueue<>();
    private final Thread thread;
    private boolean started;
    private boolean closing;
    /** The scheduler planned nothing although work is pending (should not happen): wait for a change, do not spin. */
    private boolean stalled;
    private long nextSequence;

    private volatile long steps;
    /** Smoothed end-to-end seconds of finished requests, for Retry-After; NaN until one finishes. */
    private volatile double meanSeconds = Double.NaN;

    /** Builds the engine and its KV pool (the budget's memory is allocated now); {@link #start()} starts it. */
    public Engine(MoeTransformer model, EngineConfig config) {
        this.model = Objects.requireNonNull(model, "model");
        this.config = Objects.requireNonNull(config, "config");
        this.modelConfig = model.config();
        this.pool = KvBlockPool.forLayout(model.kvLayout(), config.blockSize(), config.kvCacheBytes());
        this.scheduler = new Scheduler(new SchedulerConfig(config.blockSize(), pool.totalBlocks(), config.maxBatchTokens(),
                config.maxRunning(), config.maxWaiting(), modelConfig.maxPositions()));
        this.sampler = new Sampler(modelConfig.vocabSize());
        this.thread = Thread.ofPlatform().name("epserve-engine").daemon(true).unstarted(this::loop);
    }

    /** Builds and starts an engine. */
    public static Engine start(MoeTransformer model, EngineConfig config) {
        return new Engine(model, config).start();
    }

    /** Starts the engine thread; submissions are accepted from now on. */
    public Engine start() {
        lock.lock();
        try {
            if (started || closing) {
                throw new IllegalStateException(closing ? "the engine is closed" : "the engine is already started");
            }
            started = true;
            thread.start();
        } finally {
            lock.unlock();
        }
        return this;
    }

    public EngineConfig config() {
        return config;
    }

    public ModelConfig modelConfig() {
        return modelConfig;
    }

    /**
     * The most positions (prompt + max tokens) one request may ask for: the model's context or
     * the whole KV pool, whichever is smaller. More is {@link Submission.TooLong}; a server that
     * fills in a missing max_tokens can use {@code maxSequenceTokens() - prompt length}.
     */
    public int maxSequenceTokens() {
        return (int) Math.min(modelConfig.maxPositions(), (long) pool.totalBlocks() * pool.blockSize());
    }

    /** Whether the engine accepts requests: started, not closing, its thread alive. */
    public boolean ready() {
        lock.lock();
        try {
            return started && !closing && thread.isAlive();
        } finally {
            lock.unlock();
        }
    }

    public void addObserver(EngineObserver observer) {
        observers.add(Objects.requireNonNull(observer, "observer"));
    }

    public void removeObserver(EngineObserver observer) {
        observers.remove(observer);
    }

    public EngineStats stats() {
        lock.lock();
        try {
            return new EngineStats(scheduler.running(), scheduler.waiting(), scheduler.blocksUsed(), scheduler.blocksTotal(),
                    scheduler.blockSize(), steps, scheduler.preemptions(), scheduler.prefixQueriedTokens(), scheduler.prefixHitTokens(),
                    scheduler.prefixCachedBlocks());
        } finally {
            lock.unlock();
        }
    }

    /**
     * Starts the counters of {@link #stats()} (steps, preemptions, prefix-cache queried and hit
     * tokens) from zero, for work that is not the service's own: {@code serve}'s kernel warm-up
     * before the first client. The prefix cache keeps its blocks. Refused while any request is
     * queued or running, so that no served request's counts are lost. Meant for before anything
     * reads them: a scraper that already saw them would read the drop as a counter reset.
     *
     * @throws IllegalStateException if a request is queued or running
     */
    public void resetCounters() {
        lock.lock();
        try {
            if (scheduler.running() > 0 || scheduler.waiting() > 0 || !controls.isEmpty()) {
                throw new IllegalStateException("the engine's counters start from zero only while it is idle; " + scheduler.running()
                        + " running, " + scheduler.waiting() + " waiting");
            }
            steps = 0;
            scheduler.resetCounters();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Submits a request; its output goes to {@code listener} on the engine thread. Expected
     * refusals are values: {@link Submission.QueueFull} (with a Retry-After estimate from recent
     * request times), {@link Submission.TooLong} (prompt + max tokens exceed the model's context
     * or the whole KV pool), {@link Submission.NotReady}.
     *
     * @throws IllegalArgumentException if a prompt token is outside the model's vocabulary
     */
    public Submission submit(GenerationRequest request, TokenListener listener) {
        Objects.requireNonNull(request, "request");
        Objects.requireNonNull(listener, "listener");
        int[] prompt = request.prompt();
        for (int i = 0; i < prompt.length; i++) {
            if (prompt[i] < 0 || prompt[i] >= modelConfig.vocabSize()) {
                throw new IllegalArgumentException("prompt token " + i + " of request " + request.id() + " is " + prompt[i]
                        + ", outside the vocabulary [0, " + modelConfig.vocabSize() + ")");
            }
        }
        long submitted = System.nanoTime();
        lock.lock();
        try {
            if (!started) {
                return new Submission.NotReady("the engine is not started");
            }
            if (closing || !thread.isAlive()) {
                return new Submission.NotReady("the engine is shutting down");
            }
            long seq = nextSequence++;
            Admission admission = config.prefixCaching() ? scheduler.submit(seq, prompt, request.maxTokens())
                    : scheduler.submit(seq, prompt.length, request.maxTokens());
            return switch (admission) {
                case Admission.Queued q -> {
                    Request r = new Request(seq, request, listener, pool.view(scheduler.blockTable(seq)), submitted);
                    requests.put(seq, r);
                    stalled = false;
                    wake.signal();
                    yield new Submission.Accepted(r);
                }
                case Admission.QueueFull f -> new Submission.QueueFull(f.waiting(), retryAfterSeconds(f.waiting()));
                case Admission.TooLong t -> new Submission.TooLong(t.requested(), t.limit());
            };
        } finally {
            lock.unlock();
        }
    }

    /** About when a queue of {@code waiting} drains: waves of maxRunning requests of the recent mean duration. */
    private int retryAfterSeconds(int waiting) {
        double mean = meanSeconds;
        if (Double.isNaN(mean)) {
            return 1;
        }
        double waves = Math.ceil((waiting + 1.0) / config.maxRunning());
        return (int) Math.max(1, Math.min(3600, Math.ceil(mean * waves)));
    }

    /**
     * Stops the engine: the thread finishes its current step, then every request not finished
     * gets {@link TokenListener#onError} with an {@link EngineClosedException}. Idempotent.
     */
    @Override
    public void close() {
        lock.lock();
        try {
            closing = true;
            wake.signal();
        } finally {
            lock.unlock();
        }
        if (thread.isAlive() && Thread.currentThread() != thread) {
            boolean interrupted = false;
            while (true) {
                try {
                    thread.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    // ---------------------------------------------------------------- engine thread

    private record Control(Request request, boolean cancel) {}

    private void loop() {
        Throwable fatal = null;
        try {
            while (true) {
                List<Request> stopped = new ArrayList<>();
                BatchPlan plan;
                lock.lock();
                try {
                    while (!closing && (stalled || !scheduler.hasWork()) && controls.isEmpty()) {
                        wake.await();
                    }
                    if (closing) {
                        return;
                    }
                    for (Control c; (c = controls.poll()) != null; ) {
                        Request r = c.request();
                        if (r.done) {
                            continue;
                        }
                        if (c.cancel()) {
                            scheduler.cancel(r.sequence);
                        } else if (scheduler.finish(r.sequence)) {
                            stopped.add(r);
                        }
                    }
                    plan = scheduler.schedule();
                    stalled = plan.isEmpty() && plan.cancelled().isEmpty() && stopped.isEmpty() && scheduler.hasWork();
                    if (stalled) {
                        LOG.log(System.Logger.Level.WARNING, "the scheduler planned nothing with " + scheduler.running() + " running and "
                                + scheduler.waiting() + " waiting; waiting for a submit or cancel");
                    }
                } finally {
                    lock.unlock();
                }
                for (Request r : stopped) {
                    complete(r, FinishReason.STOP);
                }
                for (long id : plan.cancelled()) {
                    complete(requests.get(id), FinishReason.CANCELLED);
                }
                for (long id : plan.preempted()) {
                    Request r = requests.get(id);
                    r.cache.truncate(0); // its blocks are gone; it is recomputed from token 0
                    for (EngineObserver o : observers) {
                        safely(() -> o.onPreempt(r.id()));
                    }
                }
                for (BatchPlan.Reuse u : plan.reused()) {
                    requests.get(u.sequence()).cache.adopt(u.positions());
                }
                if (!plan.isEmpty()) {
                    runStep(plan);
                }
            }
        } catch (InterruptedException e) {
            fatal = e;
        } catch (Throwable t) {
            fatal = t;
            LOG.log(System.Logger.Level.ERROR, "the engine thread stopped", t);
        } finally {
            shutDown(fatal);
        }
    }

    private void runStep(BatchPlan plan) {
        List<BatchPlan.Chunk> chunks = plan.chunks();
        int n = chunks.size();
        Request[] reqs = new Request[n];
        List<MoeTransformer.SequenceChunk> modelChunks = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            BatchPlan.Chunk c = chunks.get(i);
            Request r = requests.get(c.sequence());
            if (r.cache.length() != c.start()) {
                throw new IllegalStateException("request " + r.id() + " has " + r.cache.length() + " cached positions but its chunk"
                        + " starts at " + c.start());
            }
            reqs[i] = r;
            modelChunks.add(new MoeTransformer.SequenceChunk(r.cache, r.tokens, c.start(), c.count(),
                    c.samples() ? MoeTransformer.Logits.LAST : MoeTransformer.Logits.NONE));
        }
        long t0 = System.nanoTime();
        long step = steps;
        try {
            model.step(modelChunks, observers.isEmpty() ? RoutingListener.NONE : routing, stepLogits);
        } catch (RuntimeException e) {
            steps = step + 1;
            failStep(plan, reqs, step, e);
            return;
        }

        // sample, emit, and decide each sampling sequence's fate
        FinishReason[] fate = new FinishReason[n];
        RuntimeException[] failure = new RuntimeException[n];
        for (int i = 0; i < n; i++) {
            if (!chunks.get(i).samples()) {
                continue;
            }
            Request r = reqs[i];
            GenerationRequest g = r.request;
            int token;
            try {
                token = sampler.sample(stepLogits.data(), stepLogits.offset(i), g.sampling(), r.random);
            } catch (RuntimeException e) {
                failure[i] = new StepFailedException("sampling request " + r.id() + " failed: " + e.getMessage(), e);
                continue;
            }
            r.tokens[r.known++] = token;
            r.generated++;
            if (r.generated == 1) {
                long ttft = System.nanoTime() - r.submitted;
                for (EngineObserver o : observers) {
                    safely(() -> o.onFirstToken(r.id(), ttft));
                }
            }
            try {
                r.listener.onToken(token);
            } catch (RuntimeException e) {
                failure[i] = new IllegalStateException("the token listener of request " + r.id() + " failed: " + e, e);
                continue;
            }
            if (!g.ignoreEos() && g.stopTokenIds().contains(token)) {
                fate[i] = FinishReason.STOP;
            } else if (r.generated >= g.maxTokens()) {
                fate[i] = FinishReason.LENGTH;
            }
        }
        lock.lock();
        try {
            for (int i = 0; i < n; i++) {
                if (!chunks.get(i).samples()) {
                    continue;
                }
                if (fate[i] != null || failure[i] != null) {
                    scheduler.finish(reqs[i].sequence);
                } else {
                    scheduler.append(reqs[i].sequence);
                }
            }
        } finally {
            lock.unlock();
        }
        steps = step + 1;
        // observers hear of the step before any of its requests' listeners hear the end, so a
        // client that saw its request finish sees it in the metrics too
        long nanos = System.nanoTime() - t0;
        int prefill = plan.prefillTokens();
        int decode = plan.decodeTokens();
        for (EngineObserver o : observers) {
            safely(() -> o.onStep(n, prefill, decode, nanos));
        }
        for (int i = 0; i < n; i++) {
            if (failure[i] != null) {
                fail(reqs[i], failure[i]);
            } else if (fate[i] != null) {
                complete(reqs[i], fate[i]);
            }
        }
    }

    /** The model step threw: its requests fail with a clear error and free their blocks; the rest go on. */
    private void failStep(BatchPlan plan, Request[] reqs, long step, RuntimeException cause) {
        lock.lock();
        try {
            for (BatchPlan.Chunk c : plan.chunks()) {
                scheduler.abort(c.sequence());
            }
        } finally {
            lock.unlock();
        }
        LOG.log(System.Logger.Level.WARNING, "step " + step + " failed; failing its " + reqs.length + " requests", cause);
        for (Request r : reqs) {
            fail(r, new StepFailedException("request " + r.id() + " failed: step " + step + " of the model (" + reqs.length
                    + " sequences) threw " + cause, cause));
        }
    }

    private void complete(Request r, FinishReason reason) {
        if (r == null || r.done) {
            return;
        }
        r.done = true;
        requests.remove(r.sequence);
        long nanos = System.nanoTime() - r.submitted;
        double s = nanos / 1e9;
        double m = meanSeconds;
        meanSeconds = Double.isNaN(m) ? s : 0.9 * m + 0.1 * s;
        int promptTokens = r.request.prompt().length;
        for (EngineObserver o : observers) {
            safely(() -> o.onFinish(r.id(), reason, promptTokens, r.generated, nanos));
        }
        safely(() -> r.listener.onFinish(reason, promptTokens, r.generated));
    }

    private void fail(Request r, RuntimeException error) {
        if (r == null || r.done) {
            return;
        }
        r.done = true;
        requests.remove(r.sequence);
        for (EngineObserver o : observers) {
            safely(() -> o.onError(r.id(), error));
        }
        safely(() -> r.listener.onError(error));
    }

    private void shutDown(Throwable cause) {
        lock.lock();
        try {
            closing = true;
        } finally {
            lock.unlock();
        }
        for (Request r : List.copyOf(requests.values())) {
            String msg = "the engine " + (cause == null || cause instanceof InterruptedException ? "was closed" : "stopped on " + cause)
                    + " before request " + r.id() + " finished";
            fail(r, cause == null ? new EngineClosedException(msg) : new EngineClosedException(msg, cause));
        }
    }

    private void forwardRouting(int layer, RoutingResult result) {
        for (EngineObserver o : observers) {
            safely(() -> o.onRouting(layer, result));
        }
    }

    /** A callback that throws must not stop the engine. */
    private static void safely(Runnable callback) {
        try {
            callback.run();
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "an engine callback threw", e);
        }
    }

    private void control(Request r, boolean cancel) {
        controls.add(new Control(r, cancel));
        lock.lock();
        try {
            wake.signal();
        } finally {
            lock.unlock();
        }
    }

    /** A request as the engine tracks it; the caller holds it as a {@link RequestHandle}. */
    private final class Request implements RequestHandle {
        final long sequence;
        final GenerationRequest request;
        final TokenListener listener;
        final PagedKvCache cache;
        final long submitted;
        /** Prompt, then generated tokens; {@code known} of them are set. */
        final int[] tokens;
        final RandomGenerator random;
        int known;
        int generated;
        /** Set on the engine thread once onFinish/onError went out. */
        boolean done;

        Request(long sequence, GenerationRequest request, TokenListener listener, PagedKvCache cache, long submitted) {
            this.sequence = sequence;
            this.request = request;
            this.listener = listener;
            this.cache = cache;
            this.submitted = submitted;
            int[] prompt = request.prompt();
            this.tokens = new int[prompt.length + request.maxTokens()];
            System.arraycopy(prompt, 0, tokens, 0, prompt.length);
            this.known = prompt.length;
            this.random = Sampler.newRandom(request.sampling().seed());
        }

        @Override
        public String id() {
            return request.id();
        }

        @Override
        public void cancel() {
            control(this, true);
        }

        @Override
        public void finish() {
            control(this, false);
        }

        @Override
        public String toString() {
            return "request " + request.id();
        }
    }
}
