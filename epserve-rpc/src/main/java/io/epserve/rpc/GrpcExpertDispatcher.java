package io.epserve.rpc;

import com.google.common.util.concurrent.ListenableFuture;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.ModelWeights;
import io.epserve.moe.DispatchPlan;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertRequest;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.LayerExperts;
import io.epserve.rpc.v1.WireDType;
import io.grpc.InsecureChannelCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Dispatch and combine over gRPC to expert worker processes (DESIGN.md §1): the same function as
 * {@link io.epserve.moe.InProcessDispatcher} — the same {@link DispatchPlan#split} and the same
 * {@link DispatchPlan#combine} in worker order — with the workers' partial sums crossing the wire.
 * With the default F32 wire dtype the result is bit-for-bit the in-process one.
 *
 * <p>Per worker: one channel and one long-lived bidirectional Compute stream, reopened after any
 * failure. Per dispatch: split; send every worker its request (on the caller's thread, respecting
 * the stream's {@code isReady}) before waiting on any; wait once for all answers, bounded by
 * {@link Config#deadline()}; check each answer (id, byte count, finite values); combine. Answers
 * are decoded on the transport thread (the channel uses a direct executor), so the caller wakes
 * once with everything ready.
 *
 * <p>Failures (issue 3 item 6) are exceptions, never hangs or wrong numbers: a worker that dies,
 * hangs past the deadline or answers garbage makes the dispatch throw {@link WorkerException}
 * naming it and the layer, and its channel is dropped so the next dispatch reconnects. A worker
 * that answers FAILED_PRECONDITION (it restarted and lost its share, or holds another epoch) is
 * assigned again and the request re-sent once. Every request is kept until answered, and
 * {@link #computeOn} re-runs one on a chosen worker: the hook for failover to replicas.
 *
 * <p>Deadlines: Assign and Info are unary calls with a gRPC deadline. The Compute stream lives
 * across steps, so it carries none itself; each request on it has one, enforced here (the step
 * waits at most {@link Config#deadline()}, then drops the stream and the channel).
 *
 * <pre>
 *   var d = new GrpcExpertDispatcher(modelDir, placement, Config.defaults()).start(); // Assign all
 *   var t = new MoeTransformer(weights, d, RouterChoice.LEARNED);
 *   ... t.forward(...) ...; d.stats(); d.close();
 * </pre>
 */
public final class GrpcExpertDispatcher implements ExpertDispatcher {

    /**
     * Validated settings with named defaults (DESIGN.md §3.11).
     *
     * @param deadline        how long one dispatch waits for all workers' answers
     * @param assignDeadline  how long an Assign may take (the worker maps and validates its experts)
     * @param wireDType       F32 (exact, default) or BF16 (half the bytes; each value keeps 8
     *                        significant bits, relative error ≤ 2^-8, so logits move by ~1e-2 and greedy
     *                        tokens can differ from the single-process engine)
     * @param maxMessageBytes largest answer accepted
     */
    public record Config(Duration deadline, Duration assignDeadline, WireDType wireDType, int maxMessageBytes) {
        public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(10);
        public static final Duration DEFAULT_ASSIGN_DEADLINE = Duration.ofMinutes(5);
        public static final WireDType DEFAULT_WIRE_DTYPE = WireDType.WIRE_DTYPE_F32;

        public Config {
            Objects.requireNonNull(deadline, "deadline");
            Objects.requireNonNull(assignDeadline, "assignDeadline");
            Objects.requireNonNull(wireDType, "wireDType");
            if (deadline.isNegative() || deadline.isZero()) {
                throw new IllegalArgumentException("dispatch deadline must be positive, got " + deadline);
            }
            if (assignDeadline.isNegative() || assignDeadline.isZero()) {
                throw new IllegalArgumentException("assign deadline must be positive, got " + assignDeadline);
            }
            if (!WireTensors.isSupported(wireDType)) {
                throw new IllegalArgumentException("wire dtype must be F32 or BF16, got " + wireDType);
            }
            if (maxMessageBytes < 1 << 20) {
                throw new IllegalArgumentException("maxMessageBytes must be at least 1 MiB, got " + maxMessageBytes);
            }
        }

        public static Config defaults() {
            return new Config(DEFAULT_DEADLINE, DEFAULT_ASSIGN_DEADLINE, DEFAULT_WIRE_DTYPE, WorkerServer.DEFAULT_MAX_MESSAGE_BYTES);
        }

        public Config withDeadline(Duration d) {
            return new Config(d, assignDeadline, wireDType, maxMessageBytes);
        }

        public Config withAssignDeadline(Duration d) {
            return new Config(deadline, d, wireDType, maxMessageBytes);
        }

        public Config withWireDType(WireDType t) {
            return new Config(deadline, assignDeadline, t, maxMessageBytes);
        }

        public Config withMaxMessageBytes(int bytes) {
            return new Config(deadline, assignDeadline, wireDType, bytes);
        }
    }

    /** Opens a channel to a worker address; tests pass in-process channels. */
    @FunctionalInterface
    public interface ChannelFactory {
        ManagedChannel open(String address, Config config);
    }

    /**
     * Plain TCP (host:port, no TLS: workers sit on a private network next to the frontend). The
     * direct executor runs the answer handlers on the transport thread: they only decode and wake
     * the caller, and it saves a thread hop per answer. The transport is {@link SpinningEventLoops}'
     * shared client loop, which polls for a while after each message instead of sleeping.
     */
    public static final ChannelFactory TCP = (address, config) -> NettyChannelBuilder.forTarget(address, InsecureChannelCredentials.create())
            .eventLoopGroup(SpinningEventLoops.clientGroup()).channelType(SpinningEventLoops.clientChannel())
            .directExecutor().maxInboundMessageSize(config.maxMessageBytes()).build();

    private final Path modelDir;
    private final Config config;
    private final ChannelFactory channels;
    private final ReentrantReadWriteLock stateLock = new ReentrantReadWriteLock();
    private ExpertPlacement placement;
    private Link[] links;
    private final AtomicLongArray[] tokensRouted;
    private final LongAdder dispatches = new LongAdder();
    private boolean closed;

    /** Over TCP. No I/O: {@link #start()} connects and assigns. */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config) {
        this(modelDir, placement, config, TCP);
    }

    /**
     * @param modelDir  the model directory as the workers see it (sent in Assign)
     * @param placement whose worker names are the workers' addresses (host:port)
     */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config, ChannelFactory channels) {
        this.modelDir = modelDir.toAbsolutePath().normalize();
        this.config = Objects.requireNonNull(config, "config");
        this.channels = Objects.requireNonNull(channels, "channels");
        this.placement = Objects.requireNonNull(placement, "placement");
        this.links = new Link[placement.workerCount()];
        for (int w = 0; w < links.length; w++) {
            links[w] = new Link(placement.workers().get(w));
        }
        this.tokensRouted = new AtomicLongArray[placement.layers()];
        for (int l = 0; l < placement.layers(); l++) {
            tokensRouted[l] = new AtomicLongArray(placement.isSparse(l) ? placement.numExperts() : 0);
        }
    }

    /**
     * A started dispatcher for a model served by remote workers: placement epoch 1 over
     * {@code workers} (host:port each) under {@code policy}; every worker assigned before this
     * returns. Frontends that share workers and use the same list and policy agree on the epoch.
     */
    public static GrpcExpertDispatcher connect(Path modelDir, ModelConfig cfg, List<String> workers,
                                               ExpertPlacement.Policy policy, Config config) {
        return connect(modelDir, cfg, workers, policy, config, TCP);
    }

    /** {@link #connect(Path, ModelConfig, List, ExpertPlacement.Policy, Config)} over the given channels. */
    public static GrpcExpertDispatcher connect(Path modelDir, ModelConfig cfg, List<String> workers,
                                               ExpertPlacement.Policy policy, Config config, ChannelFactory channels) {
        ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), workers, policy, 1);
        GrpcExpertDispatcher d = new GrpcExpertDispatcher(modelDir, p, config, channels);
        try {
            return d.start();
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /**
     * For {@link LoadedModel.Options#withDispatchers}: the model's routed experts on remote workers
     * ({@link #connect}); the frontend then neither resolves nor validates the experts' tensors.
     */
    public static LoadedModel.Dispatchers remote(List<String> workers, ExpertPlacement.Policy policy, Config config) {
        return remote(workers, policy, config, TCP);
    }

    /** {@link #remote(List, ExpertPlacement.Policy, Config)} over the given channels. */
    public static LoadedModel.Dispatchers remote(List<String> workers, ExpertPlacement.Policy policy, Config config,
                                                 ChannelFactory channels) {
        List<String> addresses = List.copyOf(workers);
        return new LoadedModel.Dispatchers() {
            @Override
            public ExpertDispatcher create(Path modelDir, ModelConfig cfg, ModelWeights weights) {
                return connect(modelDir, cfg, addresses, policy, config, channels);
            }

            @Override
            public boolean local() {
                return false;
            }
        };
    }

    /** Assigns every worker its share, all at once; throws WorkerException naming the first that failed. */
    public GrpcExpertDispatcher start() {
        stateLock.writeLock().lock();
        try {
            assignAll(placement, links);
            return this;
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    /**
     * Switches to a new placement at a step boundary (no dispatch in flight): assigns every worker
     * of it (new workers get new channels, dropped ones are closed). The epoch must grow.
     */
    public void updatePlacement(ExpertPlacement next) {
        stateLock.writeLock().lock();
        try {
            if (next.epoch() <= placement.epoch()) {
                throw new IllegalArgumentException("new placement epoch " + next.epoch() + " must exceed " + placement.epoch());
            }
            if (next.layers() != placement.layers() || next.numExperts() != placement.numExperts()) {
                throw new IllegalArgumentException("new placement is for another model shape");
            }
            Map<String, Link> byAddress = new HashMap<>();
            for (Link l : links) {
                byAddress.put(l.address, l);
            }
            Link[] nextLinks = new Link[next.workerCount()];
            for (int w = 0; w < nextLinks.length; w++) {
                Link l = byAddress.remove(next.workers().get(w));
                nextLinks[w] = l != null ? l : new Link(next.workers().get(w));
            }
            assignAll(next, nextLinks);
            for (Link dropped : byAddress.values()) {
                dropped.close();
            }
            placement = next;
            links = nextLinks;
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    public ExpertPlacement placement() {
        stateLock.readLock().lock();
        try {
            return placement;
        } finally {
            stateLock.readLock().unlock();
        }
    }

    public Config config() {
        return config;
    }

    @Override
    public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            DispatchPlan plan = split(layer, hidden, hiddenSize, routing);
            ExpertRequest[] requests = requests(plan);
            float[][] partials = finish(placement, links, requests, send(placement, links, requests));
            plan.combine(partials, out);
            dispatches.increment();
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /**
     * Sends every worker its request and returns at once (two-batch overlap: the caller computes
     * while the workers do). The future completes when every answer is in and combined into
     * {@code out} — on the transport thread that received the last answer — or fails with a
     * {@link WorkerException} at the first failure or at the deadline; a FAILED_PRECONDITION answer
     * is assigned and re-sent on a helper thread, as in {@link #dispatch}. hidden must stay
     * untouched until then. Call {@link #updatePlacement} only with no dispatch in flight.
     */
    @Override
    public CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        ExpertPlacement p;
        Link[] ls;
        DispatchPlan plan;
        ExpertRequest[] requests;
        Pending[] pending;
        stateLock.readLock().lock();
        try {
            ensureOpen();
            p = placement;
            ls = links;
            plan = split(layer, hidden, hiddenSize, routing);
            requests = requests(plan);
            pending = send(p, ls, requests);
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        } finally {
            stateLock.readLock().unlock();
        }
        CompletableFuture<Void> result = new CompletableFuture<>();
        Step step = stepOf(pending);
        Runnable slowPath = () -> {
            try {
                plan.combine(finish(p, ls, requests, pending), out);
                dispatches.increment();
                result.complete(null);
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        };
        if (step == null) {
            slowPath.run(); // no tokens went anywhere: combine zeros
            return result;
        }
        step.whenDone(() -> {
            float[][] partials = new float[pending.length][];
            for (int w = 0; w < pending.length; w++) {
                Pending q = pending[w];
                if (q != null) {
                    if (!q.isDone() || q.failure != null) {
                        SLOW_PATH.execute(slowPath);
                        return;
                    }
                    partials[w] = q.result;
                }
            }
            try {
                plan.combine(partials, out);
                dispatches.increment();
                result.complete(null);
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        });
        return result;
    }

    private DispatchPlan split(int layer, float[] hidden, int hiddenSize, RoutingResult routing) {
        AtomicLongArray counts = tokensRouted[layer];
        for (int i = 0, n = routing.tokens() * routing.k(); i < n; i++) {
            counts.incrementAndGet(routing.experts()[i]);
        }
        return DispatchPlan.split(layer, hidden, hiddenSize, routing, placement);
    }

    private static ExpertRequest[] requests(DispatchPlan plan) {
        ExpertRequest[] requests = new ExpertRequest[plan.workers()];
        for (int w = 0; w < requests.length; w++) {
            requests[w] = plan.request(w);
        }
        return requests;
    }

    /**
     * Runs one request on worker {@code worker} of the current placement and returns its partial
     * sums {@code [tokens × hidden]}: the building block for re-running a failed worker's share on
     * a replica ({@link WorkerException#request()}). The worker must hold the request's experts.
     */
    public float[] computeOn(int worker, ExpertRequest request) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            ExpertRequest[] requests = new ExpertRequest[placement.workerCount()];
            requests[worker] = request;
            return finish(placement, links, requests, send(placement, links, requests))[worker];
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** Asks one worker of the current placement what it holds (a unary call with the dispatch deadline). */
    public InfoResponse info(int worker) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            Link l = links[worker];
            try {
                return ExpertServiceGrpc.newBlockingStub(l.channel()).withDeadlineAfter(config.deadline().toNanos(), TimeUnit.NANOSECONDS)
                        .info(InfoRequest.getDefaultInstance());
            } catch (StatusRuntimeException e) {
                throw new WorkerException(l.address, -1, kindOf(e.getStatus()), e.getStatus().getCode(), null,
                        "worker " + l.address + " did not answer Info: " + describe(e.getStatus()), e);
            }
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** Counters since creation. */
    public DispatchStats stats() {
        stateLock.readLock().lock();
        try {
            List<DispatchStats.Worker> ws = new ArrayList<>();
            for (Link l : links) {
                ws.add(new DispatchStats.Worker(l.address, l.calls.sum(), l.bytesSent.sum(), l.bytesReceived.sum(),
                        l.computeNanos.sum(), l.roundTripNanos.sum(), l.failures.sum()));
            }
            long[][] routed = new long[tokensRouted.length][];
            for (int l = 0; l < routed.length; l++) {
                routed[l] = new long[tokensRouted[l].length()];
                for (int e = 0; e < routed[l].length; e++) {
                    routed[l][e] = tokensRouted[l].get(e);
                }
            }
            return new DispatchStats(dispatches.sum(), ws, routed);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** Closes the streams and channels (waits up to 5 s for them). Idempotent. */
    @Override
    public void close() {
        stateLock.writeLock().lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            for (Link l : links) {
                l.close();
            }
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("dispatcher closed");
        }
    }

    // ------------------------------------------------------------------ one step

    /**
     * Waits once for the answers to {@code pending} (sent with {@link #send}); FAILED_PRECONDITION
     * answers are assigned and re-sent once. Returns the partial sums per worker (null where no
     * request); throws WorkerException for the first failure.
     */
    private float[][] finish(ExpertPlacement p, Link[] ls, ExpertRequest[] requests, Pending[] pending) {
        float[][] partials = new float[requests.length][];
        List<Integer> retry = collect(pending, partials, true);
        if (!retry.isEmpty()) {
            ExpertRequest[] again = new ExpertRequest[requests.length];
            for (int w : retry) {
                ls[w].assign(p, w);
                again[w] = requests[w];
            }
            collect(send(p, ls, again), partials, false);
        }
        return partials;
    }

    private Pending[] send(ExpertPlacement p, Link[] ls, ExpertRequest[] requests) {
        Step step = new Step(System.nanoTime() + config.deadline().toNanos());
        Pending[] pending = new Pending[requests.length];
        for (int w = 0; w < requests.length; w++) {
            if (requests[w] != null) {
                step.expect();
            }
        }
        for (int w = 0; w < requests.length; w++) {
            if (requests[w] != null) {
                pending[w] = ls[w].send(requests[w], p.epoch(), step);
            }
        }
        return pending;
    }

    /**
     * Waits for the step; fills partials; returns the workers that answered FAILED_PRECONDITION
     * (when retries are allowed); throws WorkerException for the first other failure.
     */
    private List<Integer> collect(Pending[] pending, float[][] partials, boolean allowRetry) {
        Step step = stepOf(pending);
        if (step == null) {
            return List.of();
        }
        step.await();
        List<Integer> retry = new ArrayList<>();
        for (int w = 0; w < pending.length; w++) {
            Pending p = pending[w];
            if (p == null) {
                continue;
            }
            if (p.isDone() && p.failure == null) {
                partials[w] = p.result;
            } else if (p.isDone() && allowRetry && p.failure.code == Status.Code.FAILED_PRECONDITION) {
                retry.add(w);
            } else {
                // the first failure in worker order; with none, the first worker that did not answer
                throw fail(firstFailure(pending, w));
            }
        }
        return retry;
    }

    private static Step stepOf(Pending[] pending) {
        for (Pending p : pending) {
            if (p != null) {
                return p.step;
            }
        }
        return null;
    }

    private Pending firstFailure(Pending[] pending, int fallback) {
        for (Pending p : pending) {
            if (p != null && p.isDone() && p.failure != null
                    && p.failure.code != Status.Code.FAILED_PRECONDITION) {
                return p;
            }
        }
        return pending[fallback];
    }

    private WorkerException fail(Pending p) {
        Link l = p.stream.link;
        l.failures.increment();
        int layer = p.request.layer();
        WorkerException e;
        if (!p.isDone()) {
            p.fail(new LinkFailure(WorkerException.Kind.DEADLINE, Status.Code.DEADLINE_EXCEEDED,
                    "no answer within " + config.deadline().toMillis() + " ms"));
            e = new WorkerException(l.address, layer, WorkerException.Kind.DEADLINE, Status.Code.DEADLINE_EXCEEDED, p.request,
                    "worker " + l.address + " did not answer layer " + layer + " within " + config.deadline().toMillis() + " ms", null);
        } else {
            LinkFailure f = p.failure;
            String what = switch (f.kind) {
                case GARBAGE -> " answered garbage for layer " + layer + ": ";
                case REFUSED -> " refused layer " + layer + ": ";
                case UNAVAILABLE, DEADLINE -> " failed layer " + layer + ": ";
            };
            e = new WorkerException(l.address, layer, f.kind, f.code, p.request, "worker " + l.address + what + f.getMessage(), f);
        }
        l.reset(); // the next dispatch reconnects on a new channel and stream
        return e;
    }

    // ------------------------------------------------------------------ Assign

    private void assignAll(ExpertPlacement p, Link[] ls) {
        List<ListenableFuture<AssignResponse>> futures = new ArrayList<>();
        for (int w = 0; w < ls.length; w++) {
            futures.add(ls[w].assignAsync(p, w));
        }
        WorkerException first = null;
        for (int w = 0; w < ls.length; w++) {
            try {
                ls[w].assigned(p, futures.get(w).get());
            } catch (ExecutionException e) {
                WorkerException we = assignFailure(ls[w], p, e.getCause());
                first = first == null ? we : first;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new WorkerException(ls[w].address, -1, WorkerException.Kind.UNAVAILABLE, null, null,
                        "interrupted while assigning worker " + ls[w].address, e);
            }
        }
        if (first != null) {
            throw first;
        }
    }

    private WorkerException assignFailure(Link l, ExpertPlacement p, Throwable cause) {
        Status s = Status.fromThrowable(cause);
        l.reset();
        return new WorkerException(l.address, -1, kindOf(s), s.getCode(), null,
                "worker " + l.address + " failed Assign of placement epoch " + p.epoch() + ": " + describe(s), cause);
    }

    private static WorkerException.Kind kindOf(Status s) {
        return switch (s.getCode()) {
            case DEADLINE_EXCEEDED -> WorkerException.Kind.DEADLINE;
            case UNAVAILABLE, CANCELLED, UNKNOWN, ABORTED, INTERNAL, DATA_LOSS -> WorkerException.Kind.UNAVAILABLE;
            default -> WorkerException.Kind.REFUSED;
        };
    }

    private static String describe(Status s) {
        return s.getCode() + (s.getDescription() == null ? "" : ": " + s.getDescription())
                + (s.getCause() != null && s.getDescription() == null ? ": " + s.getCause() : "");
    }

    private AssignRequest assignRequest(ExpertPlacement p, int worker) {
        AssignRequest.Builder b = AssignRequest.newBuilder().setModelDir(modelDir.toString()).setEpoch(p.epoch())
                .setWireDtype(config.wireDType()).setWorkerName(p.workers().get(worker));
        for (int l = 0; l < p.layers(); l++) {
            int[] experts = p.expertsOn(worker, l);
            if (experts.length > 0) {
                LayerExperts.Builder le = LayerExperts.newBuilder().setLayer(l);
                for (int e : experts) {
                    le.addExperts(e);
                }
                b.addLayers(le);
            }
        }
        return b.build();
    }

    // ------------------------------------------------------------------ per worker

    /** One worker: its channel, its current Compute stream, its counters. */
    private final class Link {
        final String address;
        final AtomicLong nextId = new AtomicLong();
        final LongAdder calls = new LongAdder();
        final LongAdder bytesSent = new LongAdder();
        final LongAdder bytesReceived = new LongAdder();
        final LongAdder computeNanos = new LongAdder();
        final LongAdder roundTripNanos = new LongAdder();
        final LongAdder failures = new LongAdder();
        // guarded by this
        private ManagedChannel channel;
        private Stream stream;

        Link(String address) {
            this.address = address;
        }

        synchronized ManagedChannel channel() {
            if (channel == null) {
                channel = channels.open(address, config);
            }
            return channel;
        }

        ListenableFuture<AssignResponse> assignAsync(ExpertPlacement p, int w) {
            return ExpertServiceGrpc.newFutureStub(channel()).withDeadlineAfter(config.assignDeadline().toNanos(), TimeUnit.NANOSECONDS)
                    .assign(assignRequest(p, w));
        }

        /** Blocking Assign (after the worker answered FAILED_PRECONDITION). */
        void assign(ExpertPlacement p, int w) {
            try {
                assigned(p, assignAsync(p, w).get(config.assignDeadline().toNanos() + TimeUnit.SECONDS.toNanos(1), TimeUnit.NANOSECONDS));
            } catch (ExecutionException e) {
                failures.increment();
                throw assignFailure(this, p, e.getCause());
            } catch (TimeoutException e) {
                failures.increment();
                throw assignFailure(this, p, Status.DEADLINE_EXCEEDED.withDescription("no answer").asRuntimeException());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new WorkerException(address, -1, WorkerException.Kind.UNAVAILABLE, null, null,
                        "interrupted while assigning worker " + address, e);
            }
        }

        void assigned(ExpertPlacement p, AssignResponse r) {
            if (r.getEpoch() != p.epoch()) {
                throw new WorkerException(address, -1, WorkerException.Kind.GARBAGE, null, null,
                        "worker " + address + " acknowledged epoch " + r.getEpoch() + " for an Assign of epoch " + p.epoch(), null);
            }
        }

        Pending send(ExpertRequest req, long epoch, Step step) {
            long id = nextId.incrementAndGet();
            WireDType dtype = config.wireDType();
            int n = req.tokens() * req.hidden();
            ComputeRequest.Builder b = ComputeRequest.newBuilder().setId(id).setEpoch(epoch).setLayer(req.layer())
                    .setTokens(req.tokens()).setHidden(req.hidden()).setDtype(dtype)
                    .setHiddenStates(WireTensors.encode(req.x(), 0, n, dtype));
            for (int t = 0; t <= req.tokens(); t++) {
                b.addOffsets(req.offsets()[t]);
            }
            for (int i = 0, pairs = req.pairs(); i < pairs; i++) {
                b.addExperts(req.experts()[i]);
                b.addWeights(req.weights()[i]);
            }
            ComputeRequest msg = b.build();
            int size = msg.getSerializedSize();
            synchronized (this) {
                if (stream == null || stream.closed) {
                    stream = new Stream(this);
                    ExpertServiceGrpc.newStub(channel()).compute(stream);
                }
                Pending p = new Pending(id, req, dtype, stream, step);
                stream.pending.put(id, p);
                calls.increment();
                LinkFailure closedBy = stream.closedBy;
                if (closedBy != null) {
                    // the call failed as it started (e.g. nothing listens there): its onError has run already
                    stream.pending.remove(id, p);
                    p.fail(closedBy);
                    return p;
                }
                stream.send(msg);
                bytesSent.add(size);
                return p;
            }
        }

        /** Drops the stream and the channel: the next call reconnects (a restarted worker, a fresh backoff). */
        void reset() {
            Stream s;
            ManagedChannel c;
            synchronized (this) {
                s = stream;
                c = channel;
                stream = null;
                channel = null;
            }
            if (s != null) {
                s.abort("the dispatcher reset the connection to " + address);
            }
            if (c != null) {
                c.shutdownNow();
            }
        }

        void close() {
            Stream s;
            ManagedChannel c;
            synchronized (this) {
                s = stream;
                c = channel;
                stream = null;
                channel = null;
            }
            if (s != null) {
                s.halfClose();
            }
            if (c != null) {
                c.shutdown();
                try {
                    if (!c.awaitTermination(5, TimeUnit.SECONDS)) {
                        c.shutdownNow();
                    }
                } catch (InterruptedException e) {
                    c.shutdownNow();
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    /** One Compute stream of a link; requests that are not ready to go wait in the backlog (flow control). */
    private final class Stream implements ClientResponseObserver<ComputeRequest, ComputeResponse> {
        final Link link;
        final ConcurrentHashMap<Long, Pending> pending = new ConcurrentHashMap<>();
        // guarded by link
        private final ArrayDeque<ComputeRequest> backlog = new ArrayDeque<>();
        private ClientCallStreamObserver<ComputeRequest> requests;
        volatile boolean closed;
        /** Why the stream ended; set before {@link #closed}. */
        volatile LinkFailure closedBy;

        Stream(Link link) {
            this.link = link;
        }

        @Override
        public void beforeStart(ClientCallStreamObserver<ComputeRequest> r) {
            requests = r;
            r.setOnReadyHandler(this::drain);
        }

        /** Under the link's lock. */
        void send(ComputeRequest msg) {
            if (backlog.isEmpty() && requests.isReady()) {
                requests.onNext(msg);
            } else {
                backlog.add(msg);
            }
        }

        private void drain() {
            synchronized (link) {
                while (!closed && !backlog.isEmpty() && requests.isReady()) {
                    requests.onNext(backlog.poll());
                }
            }
        }

        @Override
        public void onNext(ComputeResponse r) {
            long now = System.nanoTime();
            Pending p = pending.remove(r.getId());
            if (p == null) {
                breakWith(new LinkFailure(WorkerException.Kind.GARBAGE, null, "an answer with id " + r.getId()
                        + ", which is not an outstanding request"));
                return;
            }
            link.bytesReceived.add(r.getSerializedSize());
            ExpertRequest q = p.request;
            int n = q.tokens() * q.hidden();
            int size = WireTensors.bytesPerValue(p.dtype);
            if (r.getPartialSums().size() != (long) n * size) {
                LinkFailure f = new LinkFailure(WorkerException.Kind.GARBAGE, null, r.getPartialSums().size()
                        + " bytes of partial sums, expected " + (long) n * size + " (" + q.tokens() + " tokens × " + q.hidden()
                        + " × " + size + " bytes " + WireTensors.name(p.dtype) + ")");
                p.fail(f);
                breakWith(f);
                return;
            }
            float[] out = new float[n];
            WireTensors.decode(r.getPartialSums(), p.dtype, out, n);
            int bad = WireTensors.firstNonFinite(out, n);
            if (bad >= 0) {
                LinkFailure f = new LinkFailure(WorkerException.Kind.GARBAGE, null, "non-finite partial sum " + out[bad]
                        + " at token " + bad / q.hidden() + ", element " + bad % q.hidden());
                p.fail(f);
                breakWith(f);
                return;
            }
            link.computeNanos.add(r.getComputeNanos());
            link.roundTripNanos.add(now - p.sentNanos);
            p.complete(out);
        }

        @Override
        public void onError(Throwable t) {
            Status s = Status.fromThrowable(t);
            failAll(new LinkFailure(kindOf(s), s.getCode(), describe(s)));
        }

        @Override
        public void onCompleted() {
            failAll(new LinkFailure(WorkerException.Kind.UNAVAILABLE, null, "the worker closed the stream"));
        }

        // Cancel and half-close run under the link's lock, after closed is set: a sender holding the
        // lock that saw the stream open can always still write to it.

        /** The worker broke the protocol: fail everything outstanding and cancel the stream. */
        private void breakWith(LinkFailure f) {
            failAll(f);
            synchronized (link) {
                requests.cancel("protocol violation: " + f.getMessage(), null);
            }
        }

        void abort(String why) {
            failAll(new LinkFailure(WorkerException.Kind.UNAVAILABLE, Status.Code.CANCELLED, why));
            synchronized (link) {
                requests.cancel(why, null);
            }
        }

        void halfClose() {
            LinkFailure f = new LinkFailure(WorkerException.Kind.UNAVAILABLE, Status.Code.CANCELLED, "dispatcher closed");
            synchronized (link) {
                boolean wasClosed = closed;
                failAll(f);
                backlog.clear();
                if (!wasClosed) {
                    requests.onCompleted();
                }
            }
        }

        private void failAll(LinkFailure f) {
            if (closedBy == null) {
                closedBy = f;
            }
            closed = true;
            for (Pending p : pending.values()) {
                if (pending.remove(p.id, p)) {
                    p.fail(f);
                }
            }
        }
    }

    /** Why a request failed, without the worker and layer (the WorkerException adds them). */
    private static final class LinkFailure extends RuntimeException {
        final WorkerException.Kind kind;
        final Status.Code code;

        LinkFailure(WorkerException.Kind kind, Status.Code code, String message) {
            super(message, null, false, false);
            this.kind = kind;
            this.code = code;
        }
    }

    /** A request on the wire; completed once, by its answer or by a failure. */
    private static final class Pending {
        final long id;
        final ExpertRequest request;
        final WireDType dtype;
        final Stream stream;
        final Step step;
        final long sentNanos = System.nanoTime();
        private final AtomicInteger state = new AtomicInteger(); // 0 waiting, 1 done
        volatile float[] result;
        volatile LinkFailure failure;

        Pending(long id, ExpertRequest request, WireDType dtype, Stream stream, Step step) {
            this.id = id;
            this.request = request;
            this.dtype = dtype;
            this.stream = stream;
            this.step = step;
        }

        boolean isDone() {
            return state.get() == 1;
        }

        void complete(float[] r) {
            if (state.compareAndSet(0, 1)) {
                result = r;
                step.done(false);
            }
        }

        void fail(LinkFailure f) {
            if (state.compareAndSet(0, 1)) {
                failure = f;
                step.done(f.code != Status.Code.FAILED_PRECONDITION);
            }
        }
    }

    /**
     * The answers one dispatch waits for: a synchronous caller sleeps once ({@link #await}), an
     * asynchronous one is called back once ({@link #whenDone}), at the last answer, the first
     * failure that cannot be retried, or the deadline.
     */
    private static final class Step {
        private final long deadlineNanos;
        private int remaining;
        private boolean failed;
        private Runnable callback;
        private boolean fired;
        private ScheduledFuture<?> timer;

        Step(long deadlineNanos) {
            this.deadlineNanos = deadlineNanos;
        }

        synchronized void expect() {
            remaining++;
        }

        void done(boolean fatal) {
            boolean complete;
            synchronized (this) {
                remaining--;
                failed |= fatal;
                complete = remaining == 0 || fatal;
                if (complete) {
                    notifyAll();
                }
            }
            if (complete) {
                fire();
            }
        }

        /** Runs {@code r} once when the step is complete or its deadline has passed (now, if it is). */
        void whenDone(Runnable r) {
            boolean now;
            synchronized (this) {
                callback = r;
                now = remaining == 0 || failed;
                if (!now) {
                    timer = DEADLINES.schedule(this::fire, deadlineNanos - System.nanoTime(), TimeUnit.NANOSECONDS);
                }
            }
            if (now) {
                fire();
            }
        }

        private void fire() {
            Runnable r;
            synchronized (this) {
                if (fired || callback == null) {
                    return;
                }
                fired = true;
                r = callback;
                if (timer != null) {
                    timer.cancel(false);
                }
            }
            r.run();
        }

        synchronized void await() {
            boolean interrupted = false;
            try {
                while (remaining > 0 && !failed) {
                    long left = deadlineNanos - System.nanoTime();
                    if (left <= 0) {
                        return;
                    }
                    try {
                        TimeUnit.NANOSECONDS.timedWait(this, left);
                    } catch (InterruptedException e) {
                        interrupted = true;
                        return;
                    }
                }
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    /** Fires the deadlines of asynchronous dispatches; one daemon thread for the JVM. */
    private static final ScheduledThreadPoolExecutor DEADLINES = daemonTimer();

    /** Runs the rare paths of asynchronous dispatches (re-Assign, failures) off the transport threads. */
    private static final ExecutorService SLOW_PATH = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "epserve-dispatch-slow-path");
        t.setDaemon(true);
        return t;
    });

    private static ScheduledThreadPoolExecutor daemonTimer() {
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, r -> {
            Thread th = new Thread(r, "epserve-dispatch-deadlines");
            th.setDaemon(true);
            return th;
        });
        t.setRemoveOnCancelPolicy(true);
        return t;
    }
}
