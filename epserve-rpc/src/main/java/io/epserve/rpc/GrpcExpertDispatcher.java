package io.epserve.rpc;

import com.google.common.util.concurrent.ListenableFuture;
import io.epserve.moe.DispatchPlan;
import io.epserve.moe.ExactCombine;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertRequest;
import io.epserve.moe.MoeShape;
import io.epserve.moe.PlacementControl;
import io.epserve.moe.RoutedTokens;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.WireDType;
import io.epserve.tensor.DType;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.Supplier;

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
 * <p>Failures are exceptions, never hangs or wrong numbers: a worker that dies,
 * hangs past the deadline or answers garbage makes the dispatch throw {@link WorkerException}
 * naming it and the layer, and its channel is dropped so the next dispatch reconnects. A worker
 * that answers FAILED_PRECONDITION (it restarted and lost its share, or holds another epoch) is
 * assigned again and the request re-sent once. Every request is kept until answered, and
 * {@link #computeOn} re-runs one on a chosen worker: the hook for failover to replicas.
 *
 * <p>Deadlines: every wait has one. Start-up asks each worker Info within
 * {@link Config#connectDeadline()} (connecting included), then Assign within
 * {@link Config#assignDeadline()}; Info, Release and re-Assigns later are unary calls with a gRPC
 * deadline too. The Compute stream lives across steps, so it carries none itself; each request on
 * it has one, enforced here (the step waits at most {@link Config#deadline()}, then drops the
 * stream and the channel).
 *
 * <p>Ownership and security: the dispatcher is one frontend, with a random id that every call
 * carries ({@link FrontendCredentials}, with the shared secret when configured). It checks at
 * start that each worker serves this frontend's model ({@link ModelFingerprint}) and is not held
 * by another frontend, and {@link #close()} releases its workers.
 *
 * <pre>
 *   var d = new GrpcExpertDispatcher(modelDir, placement, Config.defaults()).start(); // Assign all
 *   var t = new MoeTransformer(weights, d, RouterChoice.LEARNED);
 *   ... t.forward(...) ...; d.stats(); d.close();
 * </pre>
 */
public final class GrpcExpertDispatcher implements ExpertDispatcher, PlacementControl {

    /**
     * Validated settings with named defaults (DESIGN.md §3.11).
     *
     * @param deadline        how long one dispatch waits for all workers' answers
     * @param assignDeadline  how long an Assign may take (the worker maps and validates its experts)
     * @param wireDType       F32 (exact, default) or BF16 (half the bytes; each value keeps 8
     *                        significant bits, relative error ≤ 2^-8, so logits move by ~1e-2 and greedy
     *                        tokens can differ from the single-process engine)
     * @param maxMessageBytes largest answer accepted
     * @param expertDType     the dtype the workers hold the routed experts in (their --expert-dtype),
     *                        null for as stored: part of the model fingerprint the workers must match
     * @param security        the shared secret and/or TLS files the workers require
     * @param connectDeadline how long start-up waits for each worker's first answer (connection and
     *                        Info): a peer that accepts the connection and never answers fails here
     * @param transport       how Compute requests travel: shared memory with workers on this host
     *                        ({@link Transport#AUTO}, default), or gRPC only, or shared memory only
     */
    public record Config(Duration deadline, Duration assignDeadline, WireDType wireDType, int maxMessageBytes, DType expertDType,
                         WorkerSecurity security, Duration connectDeadline, Transport transport) {
        public static final Duration DEFAULT_DEADLINE = Duration.ofSeconds(10);
        public static final Duration DEFAULT_ASSIGN_DEADLINE = Duration.ofMinutes(5);
        public static final Duration DEFAULT_CONNECT_DEADLINE = Duration.ofSeconds(30);
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
            Objects.requireNonNull(security, "security");
            Objects.requireNonNull(connectDeadline, "connectDeadline");
            if (connectDeadline.isNegative() || connectDeadline.isZero()) {
                throw new IllegalArgumentException("connect deadline must be positive, got " + connectDeadline);
            }
            Objects.requireNonNull(transport, "transport");
        }

        /** Compatible constructor: experts as stored, no authentication. */
        public Config(Duration deadline, Duration assignDeadline, WireDType wireDType, int maxMessageBytes) {
            this(deadline, assignDeadline, wireDType, maxMessageBytes, null, WorkerSecurity.NONE, DEFAULT_CONNECT_DEADLINE, Transport.AUTO);
        }

        public static Config defaults() {
            return new Config(DEFAULT_DEADLINE, DEFAULT_ASSIGN_DEADLINE, DEFAULT_WIRE_DTYPE, WorkerServer.DEFAULT_MAX_MESSAGE_BYTES, null,
                    WorkerSecurity.NONE, DEFAULT_CONNECT_DEADLINE, Transport.AUTO);
        }

        public Config withDeadline(Duration d) {
            return new Config(d, assignDeadline, wireDType, maxMessageBytes, expertDType, security, connectDeadline, transport);
        }

        public Config withAssignDeadline(Duration d) {
            return new Config(deadline, d, wireDType, maxMessageBytes, expertDType, security, connectDeadline, transport);
        }

        public Config withWireDType(WireDType t) {
            return new Config(deadline, assignDeadline, t, maxMessageBytes, expertDType, security, connectDeadline, transport);
        }

        public Config withMaxMessageBytes(int bytes) {
            return new Config(deadline, assignDeadline, wireDType, bytes, expertDType, security, connectDeadline, transport);
        }

        /**
         * The dtype the workers hold the routed experts in (e.g. {@link DType#Q8_0}), mapped from
         * the model's converted-experts cache; null (default): as stored in the checkpoint.
         */
        public Config withExpertDType(DType t) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, t, security, connectDeadline, transport);
        }

        /** How this frontend authenticates to the workers (their --auth-secret-file / TLS files). */
        public Config withSecurity(WorkerSecurity s) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, expertDType, s, connectDeadline, transport);
        }

        public Config withConnectDeadline(Duration d) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, expertDType, security, d, transport);
        }

        /** How Compute requests travel to the workers (shared memory with co-located ones, or gRPC). */
        public Config withTransport(Transport t) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, expertDType, security, connectDeadline, t);
        }
    }

    /** Opens a channel to a worker address; tests pass in-process channels. */
    @FunctionalInterface
    public interface ChannelFactory {
        ManagedChannel open(String address, Config config);
    }

    /**
     * TCP to host:port, with mutual TLS when the config's security has TLS files, plain otherwise
     * (the shared secret, when there is one, rides on every call either way). The direct executor
     * runs the answer handlers on the transport thread: they only decode and wake the caller, and
     * it saves a thread hop per answer.
     */
    public static final ChannelFactory TCP = (address, config) -> Grpc.newChannelBuilder(address, config.security().channelCredentials())
            .directExecutor().maxInboundMessageSize(config.maxMessageBytes()).build();

    private final String fingerprint;
    private final Config config;
    private final ChannelFactory channels;
    private final String frontendId;
    private final FrontendCredentials credentials;
    private final ReentrantReadWriteLock stateLock = new ReentrantReadWriteLock();
    /** Serializes placement changes (the slow part, assigning, runs outside the state lock). */
    private final Object placementChange = new Object();
    private ExpertPlacement placement;
    private WorkerLink[] links;
    private final RoutedTokens routed;
    private volatile Failover failover;
    private final LongAdder dispatches = new LongAdder();
    /** Asynchronous dispatches sent under the current placement and not finished yet; replaced at each switch. */
    private InFlight inFlight = new InFlight();
    /** Links to workers outside the placement that membership checks (joining, or dead ones that may come back). */
    private final Map<String, WorkerLink> probes = new HashMap<>();
    private volatile Consumer<String> failureListener = address -> { };
    private boolean closed;

    /** Over TCP. Reads the model's config.json (its fingerprint); {@link #start()} connects and assigns. */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config) {
        this(modelDir, placement, config, TCP);
    }

    /**
     * @param modelDir  this frontend's copy of the model: the workers must serve the same one (the
     *                  same config.json and expert dtype, at any path; see {@link ModelFingerprint})
     * @param placement whose worker names are the workers' addresses (host:port)
     */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config, ChannelFactory channels) {
        this(modelDir, placement, config, channels, null);
    }

    /** As {@link #GrpcExpertDispatcher(Path, ExpertPlacement, Config, ChannelFactory)}, counting routed tokens into {@code routed} (null: a counter of its own with the default window). */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config, ChannelFactory channels, RoutedTokens routed) {
        this(modelDir, placement, config, channels, routed, null);
    }

    /**
     * As {@link #GrpcExpertDispatcher(Path, ExpertPlacement, Config, ChannelFactory, RoutedTokens)}
     * under a given frontend id (a restarted frontend resuming its state: its workers still hold
     * their experts for this id), or a fresh random one when null.
     */
    public GrpcExpertDispatcher(Path modelDir, ExpertPlacement placement, Config config, ChannelFactory channels, RoutedTokens routed,
                                String frontendId) {
        if (frontendId != null && !FrontendCredentials.isValidId(frontendId)) {
            throw new IllegalArgumentException("frontend id must be 1 to 64 of [A-Za-z0-9_-], got '" + frontendId + "'");
        }
        this.frontendId = frontendId != null ? frontendId : FrontendCredentials.newFrontendId();
        this.config = Objects.requireNonNull(config, "config");
        this.fingerprint = ModelFingerprint.of(modelDir, config.expertDType()).toString();
        this.credentials = new FrontendCredentials(this.frontendId, config.security().secret());
        this.channels = Objects.requireNonNull(channels, "channels");
        this.placement = Objects.requireNonNull(placement, "placement");
        this.links = new WorkerLink[placement.workerCount()];
        for (int w = 0; w < links.length; w++) {
            links[w] = newLink(placement.workers().get(w));
        }
        boolean[] sparse = new boolean[placement.layers()];
        for (int l = 0; l < sparse.length; l++) {
            sparse[l] = placement.isSparse(l);
        }
        this.routed = routed != null ? routed : new RoutedTokens(sparse, placement.numExperts(), RoutedTokens.DEFAULT_WINDOW_STEPS);
    }

    @Override
    public RoutedTokens routedTokens() {
        return routed;
    }

    private WorkerLink newLink(String address) {
        return new WorkerLink(address, fingerprint, config, channels, credentials);
    }

    /** This frontend's identity towards its workers: random, one per dispatcher. */
    public String frontendId() {
        return frontendId;
    }

    /**
     * A started dispatcher for a model served by remote workers: placement epoch 1 over
     * {@code workers} (host:port each) under {@code policy}; every worker assigned before this
     * returns. Frontends that share workers and use the same list and policy agree on the epoch.
     */
    public static GrpcExpertDispatcher connect(Path modelDir, MoeShape shape, List<String> workers,
                                               ExpertPlacement.Policy policy, Config config) {
        return connect(modelDir, shape, workers, policy, config, TCP);
    }

    /** {@link #connect(Path, MoeShape, List, ExpertPlacement.Policy, Config)} over the given channels. */
    public static GrpcExpertDispatcher connect(Path modelDir, MoeShape shape, List<String> workers,
                                               ExpertPlacement.Policy policy, Config config, ChannelFactory channels) {
        ExpertPlacement p = ExpertPlacement.create(shape.sparseLayers(), shape.numExperts(), workers, policy, 1);
        GrpcExpertDispatcher d = new GrpcExpertDispatcher(modelDir, p, config, channels);
        try {
            return d.start();
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    /** How often a frontend that computes its experts itself after a failure asks whether its workers answer again. */
    public static final Duration FAILOVER_PROBE_INTERVAL = Duration.ofMillis(500);

    /**
     * Checks every worker (it answers Info within the connect deadline, serves this model, and no
     * other frontend holds it), then assigns every worker its share, all at once (each within the
     * assign deadline); throws WorkerException naming the first worker that failed.
     */
    public GrpcExpertDispatcher start() {
        stateLock.writeLock().lock();
        try {
            checkAll(links);
            assignAll(placement, links);
            return this;
        } finally {
            stateLock.writeLock().unlock();
        }
    }

    /**
     * Moves to a new placement without a pause (DESIGN.md §5): every worker of {@code next} is
     * assigned its share while dispatches go on under the current epoch (a worker maps and checks
     * the experts it gains in the background and keeps serving the current epoch meanwhile); once
     * every worker has acknowledged, the dispatcher switches between two dispatches. The first
     * Compute of the new epoch tells a worker to release what it no longer holds. If any worker
     * fails its Assign, the change is abandoned: this throws {@link WorkerException} and the
     * current placement goes on serving. The epoch must grow; the worker set may change (new
     * workers get channels, dropped ones are closed after the switch). One change at a time.
     */
    @Override
    public void updatePlacement(ExpertPlacement next) {
        synchronized (placementChange) {
            ExpertPlacement current;
            WorkerLink[] currentLinks;
            stateLock.readLock().lock();
            try {
                ensureOpen();
                current = placement;
                currentLinks = links;
            } finally {
                stateLock.readLock().unlock();
            }
            if (next.epoch() <= current.epoch()) {
                throw new IllegalArgumentException("new placement epoch " + next.epoch() + " must exceed " + current.epoch());
            }
            if (next.layers() != current.layers() || next.numExperts() != current.numExperts()) {
                throw new IllegalArgumentException("new placement is for another model shape");
            }
            Map<String, WorkerLink> byAddress = new HashMap<>();
            for (WorkerLink l : currentLinks) {
                byAddress.put(l.address, l);
            }
            WorkerLink[] nextLinks = new WorkerLink[next.workerCount()];
            List<WorkerLink> added = new ArrayList<>();
            for (int w = 0; w < nextLinks.length; w++) {
                WorkerLink l = byAddress.remove(next.workers().get(w));
                if (l == null) {
                    l = takeProbe(next.workers().get(w));
                }
                if (l == null) {
                    l = newLink(next.workers().get(w));
                    added.add(l);
                }
                nextLinks[w] = l;
            }
            try {
                assignAll(next, nextLinks, false);
            } catch (RuntimeException e) {
                added.forEach(WorkerLink::close);
                throw e;
            }
            InFlight before;
            stateLock.writeLock().lock();
            try {
                placement = next;
                links = nextLinks;
                for (WorkerLink l : nextLinks) {
                    probes.remove(l.address);
                }
                before = inFlight;
                inFlight = new InFlight();
            } finally {
                stateLock.writeLock().unlock();
            }
            if (!byAddress.isEmpty()) {
                // steps sent under the previous epoch finish on their links first (each within its deadline)
                before.awaitIdle(config.deadline().plusSeconds(1));
            }
            for (WorkerLink dropped : byAddress.values()) {
                dropped.close();
            }
        }
    }

    @Override
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

    /**
     * With {@link #withFailover} set, a step that the workers fail (dead, hung past the deadline,
     * garbage) is computed by the frontend instead, with the same bits (see {@link Failover}), and
     * the following steps too until every worker answers again; without it the step throws
     * {@link WorkerException} naming the worker.
     */
    @Override
    public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        Failover f = failover;
        if (f != null && f.holding()) {
            routed.record(layer, routing);
            f.local().dispatch(layer, hidden, hiddenSize, routing, out);
            return;
        }
        try {
            dispatchRemote(layer, hidden, hiddenSize, routing, out);
        } catch (WorkerException e) {
            if (f == null) {
                throw e;
            }
            f.failed(e, this::allWorkersAnswer);
            f.local().dispatch(layer, hidden, hiddenSize, routing, out);
        }
    }

    private void dispatchRemote(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            DispatchPlan plan = split(layer, hidden, hiddenSize, routing);
            ExpertRequest[] requests = requests(plan);
            combine(plan, finish(placement, links, requests, send(placement, links, requests)), out);
            dispatches.increment();
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /**
     * Lets the frontend compute a step itself when its workers fail it: {@code local} makes (on
     * first use) a dispatcher over every expert from the same weights the workers map;
     * {@code probeInterval} paces the check that brings the workers back. Call before the first
     * dispatch. Exact only with the F32 wire (a BF16 wire rounds the workers' answers).
     */
    public GrpcExpertDispatcher withFailover(Supplier<ExpertDispatcher> local, Duration probeInterval) {
        return withFailover(local, probeInterval, event -> { });
    }

    /** As {@link #withFailover(Supplier, Duration)}, telling {@code events} when the frontend takes over and when the workers are back. */
    public GrpcExpertDispatcher withFailover(Supplier<ExpertDispatcher> local, Duration probeInterval, Consumer<String> events) {
        this.failover = new Failover(local, probeInterval, events);
        return this;
    }

    /** Failover counters and state; null without {@link #withFailover}. */
    public Failover.Stats failoverStats() {
        Failover f = failover;
        return f == null ? null : f.stats();
    }

    /** Whether every worker of the current placement answers Info within the dispatch deadline. */
    private boolean allWorkersAnswer() {
        int n = placement().workerCount();
        for (int w = 0; w < n; w++) {
            try {
                info(w);
            } catch (WorkerException | IllegalStateException e) {
                return false;
            }
        }
        return true;
    }

    /**
     * Sends every worker its request and returns at once (two-batch overlap: the caller computes
     * while the workers do). The future completes when every answer is in and combined into
     * {@code out} — on the transport thread that received the last answer — or fails with a
     * {@link WorkerException} at the first failure or at the deadline; a FAILED_PRECONDITION answer
     * is assigned and re-sent on a helper thread, as in {@link #dispatch}. hidden must stay
     * untouched until then. A placement change waits for the dispatches in flight before it closes the links of workers it drops.
     */
    @Override
    public CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        Failover f = failover;
        if (f == null) {
            return dispatchRemoteAsync(layer, hidden, hiddenSize, routing, out);
        }
        if (f.holding()) {
            routed.record(layer, routing);
            return f.local().dispatchAsync(layer, hidden, hiddenSize, routing, out);
        }
        return dispatchRemoteAsync(layer, hidden, hiddenSize, routing, out).handle((ok, t) -> {
            Throwable cause = t instanceof CompletionException && t.getCause() != null ? t.getCause() : t;
            if (cause == null) {
                return CompletableFuture.<Void>completedFuture(null);
            }
            if (!(cause instanceof WorkerException e)) {
                return CompletableFuture.<Void>failedFuture(cause);
            }
            f.failed(e, this::allWorkersAnswer);
            return f.local().dispatchAsync(layer, hidden, hiddenSize, routing, out);
        }).thenCompose(Function.identity());
    }

    private CompletableFuture<Void> dispatchRemoteAsync(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        ExpertPlacement p;
        WorkerLink[] ls;
        DispatchPlan plan;
        ExpertRequest[] requests;
        PendingCall[] pending;
        InFlight calls;
        stateLock.readLock().lock();
        try {
            ensureOpen();
            p = placement;
            ls = links;
            plan = split(layer, hidden, hiddenSize, routing);
            requests = requests(plan);
            calls = inFlight;
            calls.enter();
            try {
                pending = send(p, ls, requests);
            } catch (RuntimeException e) {
                calls.exit();
                throw e;
            }
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        } finally {
            stateLock.readLock().unlock();
        }
        CompletableFuture<Void> result = new CompletableFuture<>();
        result.whenComplete((ok, failed) -> calls.exit());
        DispatchStep step = stepOf(pending);
        Runnable slowPath = () -> {
            try {
                combine(plan, finish(p, ls, requests, pending), out);
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
            for (PendingCall q : pending) {
                if (q != null && (!q.isDone() || q.failure != null)) {
                    SLOW_PATH.execute(slowPath);
                    return;
                }
            }
            try {
                combine(plan, pending, out);
                dispatches.increment();
                result.complete(null);
            } catch (Throwable t) {
                result.completeExceptionally(t);
            }
        });
        return result;
    }

    private DispatchPlan split(int layer, float[] hidden, int hiddenSize, RoutingResult routing) {
        routed.record(layer, routing);
        // F32 travels with exact partial sums: any grouping gives the same bits, so replicas split hot experts
        return DispatchPlan.split(layer, hidden, hiddenSize, routing, placement,
                config.wireDType() == WireDType.WIRE_DTYPE_F32);
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
            PendingCall q = finish(placement, links, requests, send(placement, links, requests))[worker];
            if (q.exact == null) {
                return q.result;
            }
            // exact answer: each row back to floats on its token's grid
            int h = request.hidden();
            float[] out = new float[request.tokens() * h];
            for (int t = 0; t < request.tokens(); t++) {
                ExactCombine.toFloat(q.exact, t * h, h, ExactCombine.gridExponent(request.x(), t * h, h), out, t * h);
            }
            return out;
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** Asks one worker of the current placement what it holds (a unary call with the dispatch deadline). */
    public InfoResponse info(int worker) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            WorkerLink l = links[worker];
            try {
                return ExpertServiceGrpc.newBlockingStub(l.channel()).withDeadlineAfter(config.deadline().toNanos(), TimeUnit.NANOSECONDS)
                        .info(InfoRequest.getDefaultInstance());
            } catch (StatusRuntimeException e) {
                throw new WorkerException(l.address, -1, LinkFailure.kindOf(e.getStatus()), e.getStatus().getCode(), null,
                        "worker " + l.address + " did not answer Info: " + LinkFailure.describe(e.getStatus()), e);
            }
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** A probe link to {@code address} that membership made, or null; it stays a probe until the switch. */
    private WorkerLink takeProbe(String address) {
        stateLock.readLock().lock();
        try {
            return probes.get(address);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /**
     * Asks the worker at {@code address} Info, bounded by {@code deadline}: over its link when it is
     * in the placement, else over a probe link kept for it (with this frontend's credentials, so
     * the worker tells whether this frontend holds it). For membership's checks.
     */
    ListenableFuture<InfoResponse> infoAsync(String address, Duration deadline) {
        WorkerLink l;
        stateLock.writeLock().lock();
        try {
            ensureOpen();
            l = null;
            for (WorkerLink x : links) {
                if (x.address.equals(address)) {
                    l = x;
                }
            }
            if (l == null) {
                l = probes.computeIfAbsent(address, this::newLink);
            }
        } finally {
            stateLock.writeLock().unlock();
        }
        return ExpertServiceGrpc.newFutureStub(l.channel()).withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS)
                .info(InfoRequest.getDefaultInstance());
    }

    /** Drops the probe link to {@code address} (membership forgot the worker) without releasing the worker. */
    void dropProbe(String address) {
        WorkerLink l;
        stateLock.writeLock().lock();
        try {
            l = probes.remove(address);
        } finally {
            stateLock.writeLock().unlock();
        }
        if (l != null) {
            l.reset();
        }
    }

    /**
     * Drops the connection to {@code address} (placement or probe link) so the next call opens a
     * fresh one: a channel that failed to connect waits out gRPC's reconnect backoff (up to
     * minutes) before it tries again, and a restarted worker must be seen at the next check.
     */
    void resetConnection(String address) {
        List<WorkerLink> found = new ArrayList<>();
        stateLock.readLock().lock();
        try {
            for (WorkerLink l : links) {
                if (l.address.equals(address)) {
                    found.add(l);
                }
            }
            WorkerLink p = probes.get(address);
            if (p != null) {
                found.add(p);
            }
        } finally {
            stateLock.readLock().unlock();
        }
        found.forEach(WorkerLink::reset);
    }

    /** Told the address of every worker whose dispatch fails (membership marks it suspect at once). */
    void onWorkerFailure(Consumer<String> listener) {
        this.failureListener = Objects.requireNonNull(listener, "listener");
    }

    /** The current placement and its links, consistent with each other (for the worker monitor). */
    record Links(ExpertPlacement placement, WorkerLink[] links) {}

    Links links() {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            return new Links(placement, links.clone());
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /**
     * Assigns worker {@code w} of the current placement again (it restarted or was released), as
     * a dispatch does after FAILED_PRECONDITION; throws WorkerException when it fails.
     */
    void reassign(int w) {
        stateLock.readLock().lock();
        try {
            ensureOpen();
            links[w].assign(placement, w);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** The fingerprint of this frontend's model, which every worker must match. */
    String fingerprint() {
        return fingerprint;
    }

    /** Counters since creation. */
    public DispatchStats stats() {
        stateLock.readLock().lock();
        try {
            List<DispatchStats.Worker> ws = new ArrayList<>();
            for (WorkerLink l : links) {
                ws.add(new DispatchStats.Worker(l.address, l.calls.sum(), l.bytesSent.sum(), l.bytesReceived.sum(),
                        l.computeNanos.sum(), l.roundTripNanos.sum(), l.failures.sum()));
            }
            ExpertLoad total = routed.total();
            long[][] counts = new long[total.layers()][];
            for (int l = 0; l < counts.length; l++) {
                counts[l] = total.has(l) ? total.layer(l) : new long[0];
            }
            return new DispatchStats(dispatches.sum(), ws, counts);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /**
     * Compute requests sent over shared-memory rings since creation, and the workers of the
     * current placement that have one now (see {@link Transport}).
     */
    public RingUse ringUse() {
        stateLock.readLock().lock();
        try {
            long calls = 0;
            int on = 0;
            for (WorkerLink l : links) {
                calls += l.ringCalls.sum();
                on += l.onRing() ? 1 : 0;
            }
            return new RingUse(calls, on, links.length);
        } finally {
            stateLock.readLock().unlock();
        }
    }

    /** How many requests went over shared memory, and how many of the workers are on a ring now. */
    public record RingUse(long calls, int workersOnRing, int workers) {}

    /** Closes the streams and channels (waits up to 5 s for them). Idempotent. */
    @Override
    public void close() {
        stateLock.writeLock().lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            for (WorkerLink l : links) {
                l.close();
            }
            probes.values().forEach(WorkerLink::reset);
            probes.clear();
            Failover f = failover;
            if (f != null) {
                f.close();
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
    private PendingCall[] finish(ExpertPlacement p, WorkerLink[] ls, ExpertRequest[] requests, PendingCall[] pending) {
        PendingCall[] partials = new PendingCall[requests.length];
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

    /**
     * Adds the answered calls' partial sums into out: exactly ({@link DispatchPlan#combineExact})
     * for the exact wire form, else as floats in worker order.
     */
    private static void combine(DispatchPlan plan, PendingCall[] answered, float[] out) {
        boolean exact = false;
        for (PendingCall q : answered) {
            exact |= q != null && q.exact != null;
        }
        if (exact) {
            long[][] partials = new long[answered.length][];
            for (int w = 0; w < answered.length; w++) {
                partials[w] = answered[w] == null ? null : answered[w].exact;
            }
            plan.combineExact(partials, out);
        } else {
            float[][] partials = new float[answered.length][];
            for (int w = 0; w < answered.length; w++) {
                partials[w] = answered[w] == null ? null : answered[w].result;
            }
            plan.combine(partials, out);
        }
    }

    private PendingCall[] send(ExpertPlacement p, WorkerLink[] ls, ExpertRequest[] requests) {
        DispatchStep step = new DispatchStep(System.nanoTime() + config.deadline().toNanos());
        PendingCall[] pending = new PendingCall[requests.length];
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
    private List<Integer> collect(PendingCall[] pending, PendingCall[] partials, boolean allowRetry) {
        DispatchStep step = stepOf(pending);
        if (step == null) {
            return List.of();
        }
        step.await();
        List<Integer> retry = new ArrayList<>();
        for (int w = 0; w < pending.length; w++) {
            PendingCall p = pending[w];
            if (p == null) {
                continue;
            }
            if (p.isDone() && p.failure == null) {
                partials[w] = p;
            } else if (p.isDone() && allowRetry && p.failure.code == Status.Code.FAILED_PRECONDITION) {
                retry.add(w);
            } else {
                // the first failure in worker order; with none, the first worker that did not answer
                throw fail(firstFailure(pending, w));
            }
        }
        return retry;
    }

    private static DispatchStep stepOf(PendingCall[] pending) {
        for (PendingCall p : pending) {
            if (p != null) {
                return p.step;
            }
        }
        return null;
    }

    private PendingCall firstFailure(PendingCall[] pending, int fallback) {
        for (PendingCall p : pending) {
            if (p != null && p.isDone() && p.failure != null
                    && p.failure.code != Status.Code.FAILED_PRECONDITION) {
                return p;
            }
        }
        return pending[fallback];
    }

    private WorkerException fail(PendingCall p) {
        WorkerLink l = p.link;
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
        l.lastFailure = e.getMessage();
        l.reset(); // the next dispatch reconnects on a new channel and stream
        try {
            failureListener.accept(l.address);
        } catch (RuntimeException ignored) {
            // a listener's bug must not change how the step fails
        }
        return e;
    }

    // ------------------------------------------------------------------ Assign

    /**
     * Info from every worker, all at once, each bounded by the connect deadline (so a peer that
     * accepts the connection and never answers fails start-up in time, named): each must serve
     * this frontend's model and be free (or held by this frontend already).
     */
    private void checkAll(WorkerLink[] ls) {
        List<ListenableFuture<InfoResponse>> futures = new ArrayList<>();
        for (WorkerLink l : ls) {
            futures.add(ExpertServiceGrpc.newFutureStub(l.channel())
                    .withDeadlineAfter(config.connectDeadline().toNanos(), TimeUnit.NANOSECONDS).info(InfoRequest.getDefaultInstance()));
        }
        WorkerException first = null;
        for (int w = 0; w < ls.length; w++) {
            WorkerLink l = ls[w];
            WorkerException failure;
            try {
                failure = checkInfo(l, futures.get(w).get());
            } catch (ExecutionException e) {
                Status s = Status.fromThrowable(e.getCause());
                String what = s.getCode() == Status.Code.DEADLINE_EXCEEDED
                        ? " did not answer within " + config.connectDeadline().toMillis() + " ms (is it an epserve worker, and up?)"
                        : " did not answer Info: " + LinkFailure.describe(s);
                failure = new WorkerException(l.address, -1, LinkFailure.kindOf(s), s.getCode(), null, "worker " + l.address + what, e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new WorkerException(l.address, -1, WorkerException.Kind.UNAVAILABLE, null, null,
                        "interrupted while connecting to worker " + l.address, e);
            }
            if (failure != null) {
                l.reset();
                first = first == null ? failure : first;
            }
        }
        if (first != null) {
            throw first;
        }
    }

    /** Why this frontend cannot use the worker that answered {@code info}, or null when it can. */
    private WorkerException checkInfo(WorkerLink l, InfoResponse info) {
        if (!info.getModelFingerprint().equals(fingerprint)) {
            return new WorkerException(l.address, -1, WorkerException.Kind.REFUSED, null, null, "worker " + l.address
                    + " serves another model: " + info.getModelFingerprint() + ", this frontend runs " + fingerprint
                    + " (start the worker with the same --model and --expert-dtype)", null);
        }
        if (info.getHolder() == Holder.HOLDER_OTHER) {
            return new WorkerException(l.address, -1, WorkerException.Kind.REFUSED, Status.Code.PERMISSION_DENIED, null, "worker "
                    + l.address + " is held by another frontend (it is free once that one closes, or after "
                    + info.getLeaseTimeoutMs() / 1000 + " s without a call from it)", null);
        }
        return null;
    }

    private void assignAll(ExpertPlacement p, WorkerLink[] ls) {
        assignAll(p, ls, true);
    }

    /** With {@code resetOnFailure} false (a live change) a refused Assign leaves the link serving the current epoch. */
    private void assignAll(ExpertPlacement p, WorkerLink[] ls, boolean resetOnFailure) {
        List<ListenableFuture<AssignResponse>> futures = new ArrayList<>();
        for (int w = 0; w < ls.length; w++) {
            futures.add(ls[w].assignAsync(p, w));
        }
        WorkerException first = null;
        for (int w = 0; w < ls.length; w++) {
            try {
                ls[w].assigned(p, futures.get(w).get());
            } catch (ExecutionException e) {
                WorkerException we = ls[w].assignFailure(p, e.getCause(), resetOnFailure);
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

    /** A count of dispatches in flight under one placement, which a placement change waits to reach zero. */
    private static final class InFlight {
        private int count;

        synchronized void enter() {
            count++;
        }

        synchronized void exit() {
            if (--count == 0) {
                notifyAll();
            }
        }

        /** Waits until none is in flight, at most {@code limit} (every dispatch has its own deadline anyway). */
        synchronized void awaitIdle(Duration limit) {
            long end = System.nanoTime() + limit.toNanos();
            try {
                for (long left = limit.toNanos(); count > 0 && left > 0; left = end - System.nanoTime()) {
                    TimeUnit.NANOSECONDS.timedWait(this, left);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** Runs the rare paths of asynchronous dispatches (re-Assign, failures) off the transport threads. */
    private static final ExecutorService SLOW_PATH = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "epserve-dispatch-slow-path");
        t.setDaemon(true);
        return t;
    });
}
