package io.epserve.rpc;

import io.epserve.moe.ExpertRequest;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.WireDType;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.util.ArrayDeque;
import java.util.concurrent.ConcurrentHashMap;

/** One Compute stream of a {@link WorkerLink}; requests that are not ready to go wait in the backlog (flow control). */
final class ComputeStream implements ClientResponseObserver<ComputeRequest, ComputeResponse> {
    final WorkerLink link;
    final ConcurrentHashMap<Long, PendingCall> pending = new ConcurrentHashMap<>();
    // guarded by link
    private final ArrayDeque<ComputeRequest> backlog = new ArrayDeque<>();
    private ClientCallStreamObserver<ComputeRequest> requests;
    volatile boolean closed;
    /** Why the stream ended; set before {@link #closed}. */
    volatile LinkFailure closedBy;

    ComputeStream(WorkerLink link) {
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
        PendingCall p = pending.remove(r.getId());
        if (p == null) {
            breakWith(new LinkFailure(WorkerException.Kind.GARBAGE, null, "an answer with id " + r.getId()
                    + ", which is not an outstanding request"));
            return;
        }
        LinkFailure f = accept(link, p, r, now);
        if (f != null) {
            breakWith(f);
        }
    }

    /**
     * Checks answer {@code r} to {@code p} (byte count, finite values) and completes {@code p}
     * with it; or fails {@code p} and returns why, when the answer breaks the protocol (the caller
     * then ends the transport it came on). The one check of answers, whichever way they came
     * (this stream or a shared-memory ring).
     */
    static LinkFailure accept(WorkerLink link, PendingCall p, ComputeResponse r, long now) {
        link.bytesReceived.add(r.getSerializedSize());
        ExpertRequest q = p.request;
        int n = q.tokens() * q.hidden();
        if (p.dtype == WireDType.WIRE_DTYPE_F32_EXACT) {
            if (!WireTensors.isExactLength(r.getPartialSums(), n)) {
                LinkFailure f = new LinkFailure(WorkerException.Kind.GARBAGE, null, r.getPartialSums().size()
                        + " bytes of exact partial sums, expected " + 4L * n + " or " + 8L * n + " (" + q.tokens() + " tokens × "
                        + q.hidden() + " × 4 or 8 bytes)");
                p.fail(f);
                return f;
            }
            long[] exact = new long[n];
            WireTensors.decodeExact(r.getPartialSums(), exact, n);
            link.computeNanos.add(r.getComputeNanos());
            link.roundTripNanos.add(now - p.sentNanos);
            p.completeExact(exact);
            return null;
        }
        int size = WireTensors.bytesPerValue(p.dtype);
        if (r.getPartialSums().size() != (long) n * size) {
            LinkFailure f = new LinkFailure(WorkerException.Kind.GARBAGE, null, r.getPartialSums().size()
                    + " bytes of partial sums, expected " + (long) n * size + " (" + q.tokens() + " tokens × " + q.hidden()
                    + " × " + size + " bytes " + WireTensors.name(p.dtype) + ")");
            p.fail(f);
            return f;
        }
        float[] out = new float[n];
        WireTensors.decode(r.getPartialSums(), p.dtype, out, n);
        int bad = WireTensors.firstNonFinite(out, n);
        if (bad >= 0) {
            LinkFailure f = new LinkFailure(WorkerException.Kind.GARBAGE, null, "non-finite partial sum " + out[bad]
                    + " at token " + bad / q.hidden() + ", element " + bad % q.hidden());
            p.fail(f);
            return f;
        }
        link.computeNanos.add(r.getComputeNanos());
        link.roundTripNanos.add(now - p.sentNanos);
        p.complete(out);
        return null;
    }

    @Override
    public void onError(Throwable t) {
        Status s = Status.fromThrowable(t);
        failAll(new LinkFailure(LinkFailure.kindOf(s), s.getCode(), LinkFailure.describe(s)));
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
        for (PendingCall p : pending.values()) {
            if (pending.remove(p.id, p)) {
                p.fail(f);
            }
        }
    }
}
