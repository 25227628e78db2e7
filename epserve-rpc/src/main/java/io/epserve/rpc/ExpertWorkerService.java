package io.epserve.rpc;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.moe.ExpertRequest;
import io.epserve.tensor.DType;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.LayerExperts;
import io.epserve.rpc.v1.WireDType;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.Supplier;

/**
 * The expert worker's side of {@code epserve.expert.v1.ExpertService}: holds the share of the
 * last Assign and answers Compute with {@link io.epserve.moe.ExpertWorker#compute}, the same
 * function the in-process dispatcher calls. Stateless per request: a Compute depends only on the
 * request and the share.
 *
 * <p>Computes hold the read side of a lock for their duration; Assign swaps the share under the
 * write side and only then unmaps the previous checkpoint, so no compute ever reads an unmapped
 * tensor.
 */
final class ExpertWorkerService extends ExpertServiceGrpc.ExpertServiceImplBase {
    private final Supplier<String> name;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final Object assignLock = new Object();
    private final AtomicLong callsServed = new AtomicLong();
    private volatile WorkerShare share;
    /** A checkpoint opened at start (--model), handed to the first Assign of that directory. */
    private Checkpoint preopened;

    ExpertWorkerService(Supplier<String> name, Checkpoint preopened) {
        this.name = name;
        this.preopened = preopened;
    }

    // ---------------------------------------------------------------- Assign

    @Override
    public void assign(AssignRequest req, StreamObserver<AssignResponse> out) {
        try {
            out.onNext(doAssign(req));
            out.onCompleted();
        } catch (StatusRuntimeException e) {
            out.onError(e);
        } catch (IllegalArgumentException | CheckpointException e) {
            out.onError(Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": " + e.getMessage()).asRuntimeException());
        } catch (RuntimeException e) {
            out.onError(Status.INTERNAL.withDescription("worker " + name.get() + ": assign failed: " + e).withCause(e).asRuntimeException());
        }
    }

    private AssignResponse doAssign(AssignRequest req) {
        if (req.getModelDir().isEmpty()) {
            throw invalid("Assign without model_dir");
        }
        if (req.getEpoch() < 0) {
            throw invalid("Assign with negative epoch " + req.getEpoch());
        }
        if (!WireTensors.isSupported(req.getWireDtype())) {
            throw invalid("Assign with unsupported wire dtype " + req.getWireDtype() + " (F32 or BF16)");
        }
        DType expertDType = null;
        if (!req.getExpertDtype().isEmpty()) {
            try {
                expertDType = DType.parse(req.getExpertDtype());
            } catch (IllegalArgumentException e) {
                throw invalid("Assign with expert dtype '" + req.getExpertDtype() + "': " + e.getMessage());
            }
        }
        Path dir = Path.of(req.getModelDir()).toAbsolutePath().normalize();
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
            WorkerShare old = share;
            WorkerShare next;
            if (old != null && old.sameExperts(dir, wanted, expertDType)) {
                next = old.withEpoch(req.getEpoch(), name.get());
            } else {
                Checkpoint pre = null;
                if (preopened != null && preopened.dir().toAbsolutePath().normalize().equals(dir)) {
                    pre = preopened;
                    preopened = null;
                }
                next = WorkerShare.open(dir, req.getEpoch(), wanted, name.get(), pre, expertDType);
            }
            lock.writeLock().lock();
            try {
                share = next;
            } finally {
                lock.writeLock().unlock();
            }
            if (old != null && old.checkpoint != next.checkpoint) {
                old.close();
            }
            return AssignResponse.newBuilder().setMappedBytes(next.mappedBytes()).setExpertCount(next.expertCount)
                    .setEpoch(next.epoch).build();
        }
    }

    // ---------------------------------------------------------------- Compute

    @Override
    public StreamObserver<ComputeRequest> compute(StreamObserver<ComputeResponse> out) {
        return new StreamObserver<>() {
            private boolean failed;

            @Override
            public void onNext(ComputeRequest req) {
                if (failed) {
                    return;
                }
                ComputeResponse resp;
                try {
                    resp = doCompute(req);
                } catch (StatusRuntimeException e) {
                    failed = true;
                    out.onError(e);
                    return;
                } catch (IllegalArgumentException e) {
                    failed = true;
                    out.onError(invalid(e.getMessage()));
                    return;
                } catch (RuntimeException e) {
                    failed = true;
                    out.onError(Status.INTERNAL.withDescription("worker " + name.get() + ": compute of layer " + req.getLayer()
                            + " failed: " + e).withCause(e).asRuntimeException());
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

    private ComputeResponse doCompute(ComputeRequest req) {
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
            if (layer < 0 || layer >= s.config.layers() || !s.config.isSparse(layer)) {
                throw invalid("request " + req.getId() + ": layer " + layer + " is not a sparse layer of " + s.modelDir.getFileName());
            }
            if (hidden != s.config.hidden()) {
                throw invalid("request " + req.getId() + ": hidden size " + hidden + ", the model's is " + s.config.hidden());
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
            float[] y = s.worker.compute(new ExpertRequest(layer, tokens, hidden, x, offsets, experts, weights));
            var bytes = WireTensors.encode(y, 0, tokens * hidden, dtype);
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
        WorkerShare s = share;
        InfoResponse.Builder b = InfoResponse.newBuilder().setWorkerName(name.get()).setResidentBytes(residentBytes()).setResidentFileBytes(status("RssFile:"))
                .setCallsServed(callsServed.get());
        if (s != null) {
            b.setAssigned(true).setModelDir(s.modelDir.toString()).setEpoch(s.epoch).setExpertCount(s.expertCount)
                    .setMappedBytes(s.mappedBytes());
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
        out.onNext(b.build());
        out.onCompleted();
    }

    /** Unmaps the share (server shutdown). */
    void close() {
        synchronized (assignLock) {
            lock.writeLock().lock();
            try {
                if (share != null) {
                    share.close();
                    share = null;
                }
                if (preopened != null) {
                    preopened.close();
                    preopened = null;
                }
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
