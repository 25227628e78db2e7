package io.epserve.rpc;

import io.epserve.format.CheckpointException;
import com.google.protobuf.ByteString;
import io.epserve.moe.ExpertRequest;
import io.epserve.moe.ExpertSource;
import io.epserve.moe.ExpertWorker;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.AttachRingEvent;
import io.epserve.rpc.v1.AttachRingRequest;
import io.epserve.rpc.shm.RingFile;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.LayerExperts;
import io.epserve.rpc.v1.ReleaseRequest;
import io.epserve.rpc.v1.ReleaseResponse;
import io.epserve.rpc.v1.WireDType;
import io.epserve.rpc.v1.WorkerState;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Supplier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The expert worker's side of {@code epserve.expert.v1.ExpertService}: holds the share of the
 * last Assign and answers Compute with {@link io.epserve.moe.ExpertWorker#compute}, the same
 * function the in-process dispatcher calls. Stateless per request: a Compute depends only on the
 * request and the share. The model is the worker's own ({@link WorkerModel}), its experts mapped
 * by an {@link ExpertSource}; which frontend may use it is {@link WorkerOwnership}'s to say.
 *
 * <p>Computes hold the read side of a lock for their duration; Assign swaps the share under the
 * write side and only then unmaps the previous share's experts, so no compute ever reads an
 * unmapped tensor.
 */
final class ExpertWorkerService extends ExpertServiceGrpc.ExpertServiceImplBase {
    private final Supplier<String> name;
    private final ExpertSource source;
    private final String fingerprint;
    private final WorkerOwnership ownership;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final Object assignLock = new Object();
    private final AtomicLong callsServed = new AtomicLong();
    private volatile WorkerShare share;
    /** A share assigned for the next epoch while {@link #share} still serves the current one; null when none. */
    private volatile WorkerShare pending;
    /** The frontend whose Assign made {@link #share} (a pending share is always that frontend's too). */
    private volatile String shareFrontend;
    /** Set once the worker was told to stop: Info says DRAINING, Compute goes on until the holder releases it. */
    private volatile boolean draining;
    /** What the last Assign cost, as Info reports it. */
    private volatile AssignResponse lastAssign = AssignResponse.getDefaultInstance();
    /** The shared-memory rings of a co-located frontend (AttachRing). */
    private final WorkerRings rings;

    /**
     * @param source the worker's model, opened at start (header and config only); closed with this service
     */
    ExpertWorkerService(Supplier<String> name, ModelFingerprint fingerprint, ExpertSource source, WorkerOwnership ownership) {
        this.name = name;
        this.source = source;
        this.fingerprint = fingerprint.toString();
        this.ownership = ownership;
        this.rings = new WorkerRings(name, ownership, this);
    }

    // ---------------------------------------------------------------- Assign

    /**
     * Assigns run here, not on the transport thread that read them: mapping and validating the
     * experts a worker gains takes a while, and the same connection keeps carrying the current
     * epoch's Compute requests meanwhile (a live re-placement must not stall a step).
     */
    private static final ExecutorService ASSIGNS = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "epserve-worker-assign");
        t.setDaemon(true);
        return t;
    });

    @Override
    public void assign(AssignRequest req, StreamObserver<AssignResponse> out) {
        String frontend = WorkerAuthInterceptor.FRONTEND.get();
        ASSIGNS.execute(() -> assign(req, frontend, out));
    }

    private void assign(AssignRequest req, String frontend, StreamObserver<AssignResponse> out) {
        try {
            out.onNext(doAssign(req, frontend));
            out.onCompleted();
        } catch (StatusRuntimeException e) {
            out.onError(e);
        } catch (IllegalArgumentException | CheckpointException e) {
            out.onError(Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": " + e.getMessage()).asRuntimeException());
        } catch (RuntimeException e) {
            // the worker's own model failed to load: the frontend needs to know, the path stays on the worker's log
            System.err.println("epserve worker " + name.get() + ": assign failed: " + e);
            out.onError(Status.INTERNAL.withDescription("worker " + name.get() + ": assign failed: " + e.getClass().getSimpleName()
                    + " (see the worker's log)").asRuntimeException());
        }
    }

    private AssignResponse doAssign(AssignRequest req, String frontend) {
        // a frontend that may not use the worker learns nothing about its request's validity
        ownership.requireNotHeldByOther(frontend);
        if (!req.getModelFingerprint().isEmpty() && !req.getModelFingerprint().equals(fingerprint)) {
            throw Status.FAILED_PRECONDITION.withDescription("worker " + name.get() + " serves model " + fingerprint
                    + ", the frontend runs " + req.getModelFingerprint()).asRuntimeException();
        }
        if (req.getEpoch() < 0) {
            throw invalid("Assign with negative epoch " + req.getEpoch());
        }
        if (!WireTensors.isSupported(req.getWireDtype())) {
            throw invalid("Assign with unsupported wire dtype " + req.getWireDtype() + " (F32 or BF16)");
        }
        int maxLayer = -1;
        for (LayerExperts le : req.getLayersList()) {
            if (le.getLayer() < 0 || le.getLayer() > 1 << 20) {
                throw invalid("Assign with layer " + le.getLayer());
            }
            maxLayer = Math.max(maxLayer, le.getLayer());
        }
        int[][] wanted = new int[maxLayer + 1][];
        for (LayerExperts le : req.getLayersList()) {
            if (wanted[le.getLayer()] != null) {
                throw invalid("Assign lists layer " + le.getLayer() + " twice");
            }
            wanted[le.getLayer()] = le.getExpertsList().stream().mapToInt(Integer::intValue).toArray();
        }
        synchronized (assignLock) {
            ownership.beforeAssign(frontend, req.getEpoch());
            long t0 = System.nanoTime();
            WorkerShare current = share;
            // a share assigned for an epoch that never served (no Compute of it came) holds its experts all the same
            WorkerShare waiting = pending;
            WorkerShare have = waiting != null && waiting.sameExperts(wanted) ? waiting : current;
            WorkerShare next;
            if (have != null && have.sameExperts(wanted)) {
                next = have.withEpoch(req.getEpoch(), name.get());
            } else {
                // the experts of the current epoch keep serving while the gained ones are mapped and checked
                next = WorkerShare.open(source, req.getEpoch(), wanted, name.get(), current);
            }
            WorkerShare dropped;
            WorkerShare droppedToo = null;
            WorkerShare kept;
            lock.writeLock().lock();
            try {
                if (share == null || !frontend.equals(shareFrontend)) {
                    // nothing this frontend serves yet (first Assign, or a new holder): takes effect at once
                    dropped = pending;
                    droppedToo = share;
                    share = next;
                    shareFrontend = frontend;
                    pending = null;
                } else {
                    // two epochs: the current one serves until a Compute of the new one arrives
                    dropped = pending;
                    pending = next;
                }
                kept = share;
            } finally {
                lock.writeLock().unlock();
            }
            release(dropped, kept, next);
            release(droppedToo, kept, next);
            ownership.assigned(frontend, req.getEpoch());
            AssignResponse r = AssignResponse.newBuilder().setMappedBytes(next.mappedBytes()).setExpertCount(next.expertCount)
                    .setEpoch(next.epoch).setLoadNanos(System.nanoTime() - t0).setFromConvertedCache(next.fromConvertedCache())
                    .setExpertsMapped(next.gainedOver(have)).setHostId(RingFile.hostId()).build();
            lastAssign = r;
            return r;
        }
    }

    /**
     * Makes the pending share (epoch {@code epoch}) the current one, the first time a Compute of
     * that epoch arrives: the frontend has switched, so the previous epoch's experts are released.
     */
    private void promote(long epoch) {
        WorkerShare old = null;
        WorkerShare now = null;
        lock.writeLock().lock();
        try {
            WorkerShare p = pending;
            if (p != null && p.epoch == epoch) {
                old = share;
                share = p;
                pending = null;
                now = p;
            }
        } finally {
            lock.writeLock().unlock();
        }
        release(old, now, null);
    }

    /** Closes a share unless a share still in use maps the same experts (one made by withEpoch). */
    private static void release(WorkerShare s, WorkerShare keep1, WorkerShare keep2) {
        if (s == null || s == keep1 || s == keep2) {
            return;
        }
        if ((keep1 != null && keep1.experts == s.experts) || (keep2 != null && keep2.experts == s.experts)) {
            return;
        }
        s.close();
    }

    // ---------------------------------------------------------------- Compute

    @Override
    public StreamObserver<ComputeRequest> compute(StreamObserver<ComputeResponse> out) {
        String frontend = WorkerAuthInterceptor.FRONTEND.get();
        return new StreamObserver<>() {
            private boolean failed;

            @Override
            public void onNext(ComputeRequest req) {
                if (failed) {
                    return;
                }
                ComputeResponse resp;
                try {
                    resp = computeFor(frontend, req);
                } catch (RuntimeException e) {
                    failed = true;
                    out.onError(refusal(req, e));
                    return;
                }
                out.onNext(resp);
            }

            @Override
            public void onError(Throwable t) {
                // the frontend cancelled the stream (deadline, shutdown): nothing is kept per stream
            }

            @Override
            public void onCompleted() {
                if (!failed) {
                    out.onCompleted();
                }
            }
        };
    }

    /** One Compute of {@code frontend}, from its stream or its shared-memory ring: the holder's only. */
    ComputeResponse computeFor(String frontend, ComputeRequest req) {
        ownership.requireHolder(frontend);
        return doCompute(req);
    }

    /** How a failed Compute is refused: its own status, INVALID_ARGUMENT for bad input, INTERNAL for a bug. */
    StatusRuntimeException refusal(ComputeRequest req, RuntimeException e) {
        if (e instanceof StatusRuntimeException s) {
            return s;
        }
        if (e instanceof IllegalArgumentException) {
            return invalid(e.getMessage());
        }
        return Status.INTERNAL.withDescription("worker " + name.get() + ": compute of layer " + req.getLayer() + " failed: " + e)
                .withCause(e).asRuntimeException();
    }

    // ---------------------------------------------------------------- AttachRing

    @Override
    public void attachRing(AttachRingRequest req, StreamObserver<AttachRingEvent> out) {
        rings.attach(WorkerAuthInterceptor.FRONTEND.get(), req, out);
    }

    /** Ends the shared-memory rings (before the server stops: their calls would keep it waiting). */
    void closeRings() {
        rings.close();
    }

    private ComputeResponse doCompute(ComputeRequest req) {
        WorkerShare next = pending;
        if (next != null && req.getEpoch() == next.epoch) {
            promote(next.epoch);
        }
        lock.readLock().lock();
        try {
            WorkerShare s = share;
            if (s == null) {
                throw Status.FAILED_PRECONDITION.withDescription("worker " + name.get()
                        + " is not assigned (no Assign since it started): Assign, then retry").asRuntimeException();
            }
            if (req.getEpoch() != s.epoch) {
                throw Status.FAILED_PRECONDITION.withDescription("worker " + name.get() + " holds placement epoch " + s.epoch
                        + ", the request is for epoch " + req.getEpoch() + ": Assign, then retry").asRuntimeException();
            }
            int layer = req.getLayer();
            int tokens = req.getTokens();
            int hidden = req.getHidden();
            WireDType dtype = req.getDtype();
            if (!WireTensors.isSupported(dtype)) {
                throw invalid("request " + req.getId() + ": unsupported dtype " + dtype + " (F32 or BF16)");
            }
            if (!s.shape.isSparse(layer)) {
                throw invalid("request " + req.getId() + ": layer " + layer + " is not a sparse layer of the model");
            }
            if (hidden != s.shape.hidden()) {
                throw invalid("request " + req.getId() + ": hidden size " + hidden + ", the model's is " + s.shape.hidden());
            }
            if (tokens < 1 || (long) tokens * hidden > Integer.MAX_VALUE / 4) {
                throw invalid("request " + req.getId() + ": " + tokens + " tokens");
            }
            long want = (long) tokens * hidden * WireTensors.bytesPerValue(dtype);
            if (req.getHiddenStates().size() != want) {
                throw invalid("request " + req.getId() + ": " + req.getHiddenStates().size() + " bytes of hidden states, expected "
                        + want + " (" + tokens + " tokens × " + hidden + " × " + WireTensors.bytesPerValue(dtype) + " bytes)");
            }
            if (req.getOffsetsCount() != tokens + 1) {
                throw invalid("request " + req.getId() + ": " + req.getOffsetsCount() + " offsets for " + tokens + " tokens (need tokens + 1)");
            }
            int[] offsets = new int[tokens + 1];
            for (int t = 0; t <= tokens; t++) {
                offsets[t] = req.getOffsets(t);
                if (t == 0 ? offsets[0] != 0 : offsets[t] < offsets[t - 1]) {
                    throw invalid("request " + req.getId() + ": offsets must start at 0 and not decrease (offset " + t + " = " + offsets[t] + ")");
                }
            }
            int pairs = offsets[tokens];
            if (req.getExpertsCount() != pairs || req.getWeightsCount() != pairs) {
                throw invalid("request " + req.getId() + ": " + req.getExpertsCount() + " experts and " + req.getWeightsCount()
                        + " weights for " + pairs + " pairs");
            }
            int[] experts = new int[pairs];
            float[] weights = new float[pairs];
            for (int p = 0; p < pairs; p++) {
                experts[p] = req.getExperts(p);
                weights[p] = req.getWeights(p);
                if (!s.holds(layer, experts[p])) {
                    throw invalid("request " + req.getId() + ": expert " + experts[p] + " of layer " + layer
                            + " is not held here (placement epoch " + s.epoch + ")");
                }
            }
            long t0 = System.nanoTime();
            float[] x = new float[tokens * hidden];
            WireTensors.decode(req.getHiddenStates(), dtype, x, tokens * hidden);
            ExpertRequest q = new ExpertRequest(layer, tokens, hidden, x, offsets, experts, weights);
            ByteString bytes;
            if (dtype == WireDType.WIRE_DTYPE_F32_EXACT) {
                long[] y = new long[tokens * hidden];
                s.worker.computeExact(q, y, new ExpertWorker.Scratch());
                bytes = WireTensors.encodeExact(y, tokens * hidden);
            } else {
                bytes = WireTensors.encode(s.worker.compute(q), 0, tokens * hidden, dtype);
            }
            long nanos = System.nanoTime() - t0;
            callsServed.incrementAndGet();
            return ComputeResponse.newBuilder().setId(req.getId()).setPartialSums(bytes).setComputeNanos(nanos).build();
        } finally {
            lock.readLock().unlock();
        }
    }

    // ---------------------------------------------------------------- Info

    @Override
    public void info(InfoRequest req, StreamObserver<InfoResponse> out) {
        Holder holder = ownership.holderFor(WorkerAuthInterceptor.FRONTEND.get());
        AssignResponse last = lastAssign;
        InfoResponse.Builder b = InfoResponse.newBuilder().setWorkerName(name.get()).setModelFingerprint(fingerprint)
                .setHolder(holder).setLeaseTimeoutMs(ownership.lease().toMillis())
                .setState(draining ? WorkerState.WORKER_STATE_DRAINING : WorkerState.WORKER_STATE_SERVING)
                .setLastAssignNanos(last.getLoadNanos()).setLastAssignFromConvertedCache(last.getFromConvertedCache())
                .setLastAssignExpertsMapped(last.getExpertsMapped());
        WorkerShare s = share;
        if (holder != Holder.HOLDER_OTHER) {
            b.setResidentBytes(residentBytes()).setResidentFileBytes(status("RssFile:")).setCallsServed(callsServed.get());
        }
        if (holder == Holder.HOLDER_CALLER) {
            if (s != null) {
                b.setAssigned(true).setEpoch(s.epoch).setExpertCount(s.expertCount).setMappedBytes(s.mappedBytes());
                for (int l = 0; l < s.layers.length; l++) {
                    if (s.layers[l].length > 0) {
                        LayerExperts.Builder le = LayerExperts.newBuilder().setLayer(l);
                        for (int e : s.layers[l]) {
                            le.addExperts(e);
                        }
                        b.addLayers(le);
                    }
                }
            }
        }
        out.onNext(b.build());
        out.onCompleted();
    }

    // ---------------------------------------------------------------- Release

    @Override
    public void release(ReleaseRequest req, StreamObserver<ReleaseResponse> out) {
        try {
            boolean released;
            synchronized (assignLock) {
                released = ownership.release(WorkerAuthInterceptor.FRONTEND.get());
            }
            out.onNext(ReleaseResponse.newBuilder().setReleased(released).build());
            out.onCompleted();
        } catch (StatusRuntimeException e) {
            out.onError(e);
        }
    }

    /** From now on Info reports DRAINING; Compute and Assign go on (the holder places the experts elsewhere, then releases). */
    void drain() {
        draining = true;
    }

    boolean draining() {
        return draining;
    }

    /** Whether a frontend holds this worker (with a live lease). */
    boolean held() {
        return ownership.held();
    }

    /** Ends the rings and unmaps the share (server shutdown). */
    void close() {
        rings.close();
        synchronized (assignLock) {
            lock.writeLock().lock();
            try {
                if (pending != null) {
                    release(pending, share, null);
                    pending = null;
                }
                if (share != null) {
                    share.close();
                    share = null;
                }
                source.close();
            } finally {
                lock.writeLock().unlock();
            }
        }
    }

    /** VmRSS of /proc/self/status in bytes, or -1 where there is no such file (not Linux). */
    static long residentBytes() {
        return status("VmRSS:");
    }

    /** A size field of /proc/self/status in bytes, or -1 where there is none. */
    static long status(String field) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith(field)) {
                    String[] f = line.substring(field.length()).trim().split("\\s+");
                    long v = Long.parseLong(f[0]);
                    return f.length > 1 && f[1].equalsIgnoreCase("kB") ? v * 1024 : v;
                }
            }
        } catch (IOException | RuntimeException e) {
            return -1;
        }
        return -1;
    }

    private StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": " + message).asRuntimeException();
    }
}
