package io.epserve.rpc;

import com.google.common.util.concurrent.ListenableFuture;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertRequest;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.LayerExperts;
import io.epserve.rpc.v1.WireDType;
import io.epserve.rpc.v1.ReleaseRequest;
import io.epserve.rpc.shm.RingFile;
import io.grpc.CallCredentials;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/** One worker of a {@link GrpcExpertDispatcher}: its channel, its current Compute stream, its counters. */
final class WorkerLink {
    final String address;
    final AtomicLong nextId = new AtomicLong();
    final LongAdder calls = new LongAdder();
    final LongAdder bytesSent = new LongAdder();
    final LongAdder bytesReceived = new LongAdder();
    final LongAdder computeNanos = new LongAdder();
    final LongAdder roundTripNanos = new LongAdder();
    final LongAdder failures = new LongAdder();
    /** Compute requests that went over the shared-memory ring (the rest of {@link #calls} went over gRPC). */
    final LongAdder ringCalls = new LongAdder();
    /** The message of the last failed call (dispatch or Assign), for readiness reasons; null before any. */
    volatile String lastFailure;
    private final String fingerprint;
    private final GrpcExpertDispatcher.Config config;
    private final GrpcExpertDispatcher.ChannelFactory channels;
    private final ClientInterceptor credentials;
    // guarded by this
    private ManagedChannel channel;
    private Channel authenticated;
    private ComputeStream stream;
    /** The shared-memory ring to a co-located worker, or null (see {@link Transport}). */
    private volatile ShmLink shm;
    /** The worker's host id from its last Assign (empty: unknown). */
    private volatile String workerHost = "";
    /** Set when attaching the ring failed (at {@link #ringRefusedAt}): not tried again for a while, or before the next Assign. */
    private volatile boolean ringRefused;
    private volatile long ringRefusedAt;
    /** How long after a refused attach the link asks again (a worker that hung, then recovered without a restart). */
    static final long RING_RETRY_NANOS = TimeUnit.SECONDS.toNanos(5);
    /** One attach at a time (it waits for the worker; the link's own lock stays free meanwhile). */
    private final Object ringLock = new Object();

    /**
     * @param address     the worker's address, its name in the placement (host:port over TCP)
     * @param fingerprint the frontend's model, sent in Assign (the worker refuses another model)
     * @param config      the dispatcher's settings (deadlines, wire dtype)
     * @param channels    opens this worker's channel, on first use and after every {@link #reset}
     * @param credentials the frontend's identity and secret, put on every call
     */
    WorkerLink(String address, String fingerprint, GrpcExpertDispatcher.Config config,
               GrpcExpertDispatcher.ChannelFactory channels, CallCredentials credentials) {
        this.address = address;
        this.fingerprint = fingerprint;
        this.config = config;
        this.channels = channels;
        this.credentials = new ClientInterceptor() {
            @Override
            public <Q, A> ClientCall<Q, A> interceptCall(MethodDescriptor<Q, A> method, CallOptions options, Channel next) {
                return next.newCall(method, options.withCallCredentials(credentials));
            }
        };
    }

    /** The channel to the worker; every call on it carries the frontend's credentials. */
    synchronized Channel channel() {
        if (channel == null) {
            channel = channels.open(address, config);
            authenticated = ClientInterceptors.intercept(channel, credentials);
        }
        return authenticated;
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
            throw assignFailure(p, e.getCause());
        } catch (TimeoutException e) {
            failures.increment();
            throw assignFailure(p, Status.DEADLINE_EXCEEDED.withDescription("no answer").asRuntimeException());
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
        workerHost = r.getHostId();
        ringRefused = false;
        String refusal = attachRing();
        if (refusal != null && config.transport() == Transport.SHM) {
            failures.increment();
            WorkerException e = new WorkerException(address, -1, WorkerException.Kind.REFUSED, null, null,
                    "worker " + address + " cannot be reached over shared memory (--transport shm): " + refusal, null);
            lastFailure = e.getMessage();
            throw e;
        }
    }

    /**
     * The shared-memory ring, attached first when the transport allows it and the worker shares
     * this host; null: this request goes on the stream. After a refused attach the link waits
     * {@link #RING_RETRY_NANOS} before it asks again (a worker that restarted answers the stream
     * with FAILED_PRECONDITION, is assigned, and attaches then).
     */
    private ShmLink ring() {
        ShmLink s = shm;
        if (s != null && s.open()) {
            return s;
        }
        if (config.transport() == Transport.GRPC || workerHost.isEmpty()
                || ringRefused && System.nanoTime() - ringRefusedAt < RING_RETRY_NANOS) {
            return null;
        }
        attachRing();
        s = shm;
        return s != null && s.open() ? s : null;
    }

    /**
     * Attaches a shared-memory ring when the transport allows it and the worker runs on this host
     * (its Assign told its host id). Returns null when the ring is up (or the transport is gRPC),
     * else why not.
     */
    private String attachRing() {
        synchronized (ringLock) {
            ShmLink current = shm;
            if (config.transport() == Transport.GRPC || current != null && current.open()) {
                return null;
            }
            String host = workerHost;
            String why;
            if (host.isEmpty() || !host.equals(RingFile.hostId())) {
                why = "it runs on another host" + (host.isEmpty() ? " (or did not say which)" : "");
            } else {
                ShmLink.Attempt a = ShmLink.attach(this, channel(), config.deadline());
                if (a.link() != null) {
                    shm = a.link();
                    ringRefused = false;
                    return null;
                }
                why = a.refusal();
            }
            ringRefused = true;
            ringRefusedAt = System.nanoTime();
            return why;
        }
    }

    /** Whether Compute requests to this worker go over a shared-memory ring now. */
    boolean onRing() {
        ShmLink s = shm;
        return s != null && s.open();
    }

    /** Drops the connection (as {@link #reset}) and describes a failed Assign of {@code p}. */
    WorkerException assignFailure(ExpertPlacement p, Throwable cause) {
        return assignFailure(p, cause, true);
    }

    /** As {@link #assignFailure(ExpertPlacement, Throwable)}; with {@code reset} false the connection stays (a live change failed). */
    WorkerException assignFailure(ExpertPlacement p, Throwable cause, boolean reset) {
        Status s = Status.fromThrowable(cause);
        if (reset) {
            reset();
        }
        WorkerException e = new WorkerException(address, -1, LinkFailure.kindOf(s), s.getCode(), null,
                "worker " + address + " failed Assign of placement epoch " + p.epoch() + ": " + LinkFailure.describe(s), cause);
        lastFailure = e.getMessage();
        return e;
    }

    private AssignRequest assignRequest(ExpertPlacement p, int worker) {
        AssignRequest.Builder b = AssignRequest.newBuilder().setModelFingerprint(fingerprint).setEpoch(p.epoch())
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

    PendingCall send(ExpertRequest req, long epoch, DispatchStep step) {
        long id = nextId.incrementAndGet();
        WireDType dtype = WireTensors.onTheWire(config.wireDType());
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
        ShmLink ring = ring();
        if (ring != null) {
            PendingCall p = new PendingCall(id, req, dtype, this, step);
            if (ring.offer(msg, size, p)) {
                calls.increment();
                ringCalls.increment();
                bytesSent.add(size);
                return p;
            }
        }
        synchronized (this) {
            if (stream == null || stream.closed) {
                stream = new ComputeStream(this);
                ExpertServiceGrpc.newStub(channel()).compute(stream);
            }
            PendingCall p = new PendingCall(id, req, dtype, this, step);
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

    private void closeRing(String why) {
        ShmLink r = shm;
        shm = null;
        if (r != null) {
            r.close(why);
        }
    }

    /** Drops the stream and the channel: the next call reconnects (a restarted worker, a fresh backoff). */
    void reset() {
        ComputeStream s;
        ManagedChannel c;
        closeRing("the dispatcher reset the connection to " + address);
        synchronized (this) {
            s = stream;
            c = channel;
            stream = null;
            channel = null;
            authenticated = null;
        }
        if (s != null) {
            s.abort("the dispatcher reset the connection to " + address);
        }
        if (c != null) {
            c.shutdownNow();
        }
    }

    /**
     * Gives the worker up (Release, bounded by the dispatch deadline) so another frontend may take
     * it at once, then closes the stream and the channel. A worker that does not answer keeps the
     * hold until its lease expires; closing goes on regardless.
     */
    void close() {
        ComputeStream s;
        ManagedChannel c;
        Channel r;
        closeRing("dispatcher closed");
        synchronized (this) {
            s = stream;
            c = channel;
            r = authenticated;
            stream = null;
            channel = null;
            authenticated = null;
        }
        if (s != null) {
            s.halfClose();
        }
        if (r != null) {
            try {
                long nanos = Math.min(config.deadline().toNanos(), TimeUnit.SECONDS.toNanos(5));
                ExpertServiceGrpc.newBlockingStub(r).withDeadlineAfter(nanos, TimeUnit.NANOSECONDS)
                        .release(ReleaseRequest.getDefaultInstance());
            } catch (StatusRuntimeException e) {
                // gone, hung, or taken over already: nothing to give up
            }
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
