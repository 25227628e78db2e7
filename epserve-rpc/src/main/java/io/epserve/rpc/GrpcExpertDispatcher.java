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
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
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
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
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
     * @param expertDType     the dtype the workers hold the routed experts in (their --expert-dtype),
     *                        null for as stored: part of the model fingerprint the workers must match
     * @param security        the shared secret and/or TLS files the workers require
     */
    public record Config(Duration deadline, Duration assignDeadline, WireDType wireDType, int maxMessageBytes, DType expertDType,
                         WorkerSecurity security) {
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
            Objects.requireNonNull(security, "security");
        }

        /** Compatible constructor: experts as stored, no authentication. */
        public Config(Duration deadline, Duration assignDeadline, WireDType wireDType, int maxMessageBytes) {
            this(deadline, assignDeadline, wireDType, maxMessageBytes, null, WorkerSecurity.NONE);
        }

        public static Config defaults() {
            return new Config(DEFAULT_DEADLINE, DEFAULT_ASSIGN_DEADLINE, DEFAULT_WIRE_DTYPE, WorkerServer.DEFAULT_MAX_MESSAGE_BYTES, null,
                    WorkerSecurity.NONE);
        }

        public Config withDeadline(Duration d) {
            return new Config(d, assignDeadline, wireDType, maxMessageBytes, expertDType, security);
        }

        public Config withAssignDeadline(Duration d) {
            return new Config(deadline, d, wireDType, maxMessageBytes, expertDType, security);
        }

        public Config withWireDType(WireDType t) {
            return new Config(deadline, assignDeadline, t, maxMessageBytes, expertDType, security);
        }

        public Config withMaxMessageBytes(int bytes) {
            return new Config(deadline, assignDeadline, wireDType, bytes, expertDType, security);
        }

        /**
         * The dtype the workers hold the routed experts in (e.g. {@link DType#Q8_0}), mapped from
         * the model's converted-experts cache; null (default): as stored in the checkpoint.
         */
        public Config withExpertDType(DType t) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, t, security);
        }

        /** How this frontend authenticates to the workers (their --auth-secret-file / TLS files). */
        public Config withSecurity(WorkerSecurity s) {
            return new Config(deadline, assignDeadline, wireDType, maxMessageBytes, expertDType, s);
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
    private final String frontendId = FrontendCredentials.newFrontendId();
    private final FrontendCredentials credentials;
    private final ReentrantReadWriteLock stateLock = new ReentrantReadWriteLock();
    private ExpertPlacement placement;
    private WorkerLink[] links;
    private final AtomicLongArray[] tokensRouted;
    private final LongAdder dispatches = new LongAdder();
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
        this.config = Objects.requireNonNull(config, "config");
        this.fingerprint = ModelFingerprint.of(modelDir, config.expertDType()).toString();
        this.credentials = new FrontendCredentials(frontendId, config.security().secret());
        this.channels = Objects.requireNonNull(channels, "channels");
        this.placement = Objects.requireNonNull(placement, "placement");
        this.links = new WorkerLink[placement.workerCount()];
        for (int w = 0; w < links.length; w++) {
            links[w] = newLink(placement.workers().get(w));
        }
        this.tokensRouted = new AtomicLongArray[placement.layers()];
        for (int l = 0; l < placement.layers(); l++) {
            tokensRouted[l] = new AtomicLongArray(placement.isSparse(l) ? placement.numExperts() : 0);
        }
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

    /**
     * Checks every worker (it answers Info within the dispatch deadline, serves this model, and no
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
            Map<String, WorkerLink> byAddress = new HashMap<>();
            for (WorkerLink l : links) {
                byAddress.put(l.address, l);
            }
            WorkerLink[] nextLinks = new WorkerLink[next.workerCount()];
            for (int w = 0; w < nextLinks.length; w++) {
                WorkerLink l = byAddress.remove(next.workers().get(w));
                nextLinks[w] = l != null ? l : newLink(next.workers().get(w));
            }
            assignAll(next, nextLinks);
            for (WorkerLink dropped : byAddress.values()) {
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
        WorkerLink[] ls;
        DispatchPlan plan;
        ExpertRequest[] requests;
        PendingCall[] pending;
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
        DispatchStep step = stepOf(pending);
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
                PendingCall q = pending[w];
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
        return DispatchPlan.split(layer, hidden, hiddenSize, routing, placement, config.wireDType() == WireDType.WIRE_DTYPE_F32);
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

    /** Counters since creation. */
    public DispatchStats stats() {
        stateLock.readLock().lock();
        try {
            List<DispatchStats.Worker> ws = new ArrayList<>();
            for (WorkerLink l : links) {
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
            for (WorkerLink l : links) {
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
    private float[][] finish(ExpertPlacement p, WorkerLink[] ls, ExpertRequest[] requests, PendingCall[] pending) {
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
    private List<Integer> collect(PendingCall[] pending, float[][] partials, boolean allowRetry) {
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
        WorkerLink l = p.stream.link;
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

    /**
     * Info from every worker, all at once, each bounded by the dispatch deadline (so a peer that
     * accepts the connection and never answers fails start-up in time, named): each must serve
     * this frontend's model and be free (or held by this frontend already).
     */
    private void checkAll(WorkerLink[] ls) {
        List<ListenableFuture<InfoResponse>> futures = new ArrayList<>();
        for (WorkerLink l : ls) {
            futures.add(ExpertServiceGrpc.newFutureStub(l.channel()).withDeadlineAfter(config.deadline().toNanos(), TimeUnit.NANOSECONDS)
                    .info(InfoRequest.getDefaultInstance()));
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
                        ? " did not answer within " + config.deadline().toMillis() + " ms (is it an epserve worker, and up?)"
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
        if (info.getHolder() == io.epserve.rpc.v1.Holder.HOLDER_OTHER) {
            return new WorkerException(l.address, -1, WorkerException.Kind.REFUSED, Status.Code.PERMISSION_DENIED, null, "worker "
                    + l.address + " is held by another frontend (it is free once that one closes, or after "
                    + info.getLeaseTimeoutMs() / 1000 + " s without a call from it)", null);
        }
        return null;
    }

    private void assignAll(ExpertPlacement p, WorkerLink[] ls) {
        List<ListenableFuture<AssignResponse>> futures = new ArrayList<>();
        for (int w = 0; w < ls.length; w++) {
            futures.add(ls[w].assignAsync(p, w));
        }
        WorkerException first = null;
        for (int w = 0; w < ls.length; w++) {
            try {
                ls[w].assigned(p, futures.get(w).get());
            } catch (ExecutionException e) {
                WorkerException we = ls[w].assignFailure(p, e.getCause());
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

    /** Runs the rare paths of asynchronous dispatches (re-Assign, failures) off the transport threads. */
    private static final ExecutorService SLOW_PATH = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "epserve-dispatch-slow-path");
        t.setDaemon(true);
        return t;
    });
}
