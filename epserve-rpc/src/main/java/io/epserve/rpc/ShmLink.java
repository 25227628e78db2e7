package io.epserve.rpc;

import com.google.protobuf.ByteString;
import io.epserve.rpc.shm.RingFile;
import io.epserve.rpc.shm.ShmRing;
import io.epserve.rpc.v1.AttachRingEvent;
import io.epserve.rpc.v1.AttachRingRequest;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.grpc.Channel;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The shared-memory data path from a frontend to one co-located worker ({@link WorkerLink}):
 * Compute requests go on the request ring of a {@link RingFile}, answers come back on the answer
 * ring, read by one receiver thread that checks and completes them exactly as the gRPC stream's
 * answers ({@link ComputeStream#accept}). The AttachRing call that set the ring up stays open
 * for its life: when the worker dies, gRPC ends that call and everything outstanding on the ring
 * fails at once, as on a broken stream; a hung worker is caught by the step's deadline as
 * always, and the dispatcher then drops the ring with the link ({@link WorkerLink#reset}), so a
 * late answer is never combined.
 */
final class ShmLink {
    /** A ring attached, or why not (the caller keeps using gRPC, or fails in {@link Transport#SHM}). */
    record Attempt(ShmLink link, String refusal) {}

    private final WorkerLink link;
    private final RingFile rings;
    private final ConcurrentHashMap<Long, PendingCall> pending = new ConcurrentHashMap<>();
    private final CompletableFuture<Void> attached = new CompletableFuture<>();
    private volatile ClientCallStreamObserver<AttachRingRequest> call;
    private volatile LinkFailure closedBy;

    private ShmLink(WorkerLink link, RingFile rings) {
        this.link = link;
        this.rings = rings;
    }

    /**
     * Creates a ring file, asks the worker to serve it (bounded by {@code deadline}) and starts
     * receiving; the file's name is deleted either way (the mappings stay).
     */
    static Attempt attach(WorkerLink link, Channel channel, Duration deadline) {
        Path dir = RingFile.defaultDir();
        if (dir == null) {
            return new Attempt(null, "no shared-memory folder ($" + RingFile.DIR_ENV + " or /dev/shm)");
        }
        RingFile rings;
        try {
            rings = RingFile.create(dir, RingFile.DEFAULT_CAPACITY, RingFile.SPIN_NANOS);
        } catch (IOException | RuntimeException e) {
            return new Attempt(null, "cannot create a ring file in " + dir + ": " + e);
        }
        ShmLink s = new ShmLink(link, rings);
        try {
            AttachRingRequest req = AttachRingRequest.newBuilder().setHostId(RingFile.hostId()).setRingName(rings.name())
                    .setToken(ByteString.copyFrom(rings.token())).build();
            ExpertServiceGrpc.newStub(channel).attachRing(req, s.new Observer());
            s.attached.get(deadline.toNanos(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            s.close("the attach failed");
            return new Attempt(null, LinkFailure.describe(Status.fromThrowable(e.getCause())));
        } catch (TimeoutException e) {
            s.close("the attach timed out");
            return new Attempt(null, "no answer to AttachRing within " + deadline.toMillis() + " ms");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            s.close("interrupted");
            return new Attempt(null, "interrupted");
        } finally {
            rings.unlink();
        }
        Thread t = new Thread(s::receive, "epserve-shm-answers-" + link.address);
        t.setDaemon(true);
        t.start();
        return new Attempt(s, null);
    }

    /**
     * Puts {@code msg} ({@code size} serialized bytes) on the request ring as {@code p}'s request.
     * False when it does not go this way (too large for the rings, no room now, or the ring is
     * closed): the caller sends it on the stream instead.
     */
    synchronized boolean offer(ComputeRequest msg, int size, PendingCall p) {
        ShmRing requests = rings.requests();
        if (closedBy != null || !RingMessages.fits(requests, size, RingMessages.maxAnswerBytes(p.request.tokens(), p.request.hidden()))) {
            return false;
        }
        MemorySegment room = requests.claim(size);
        if (room == null) {
            return false;
        }
        pending.put(p.id, p);
        if (closedBy != null && pending.remove(p.id, p)) {
            return false; // closed meanwhile and the call is still ours: the stream takes it
        }
        RingMessages.write(msg, size, room, 0);
        requests.publish();
        return true;
    }

    /** Whether the ring still carries requests. */
    boolean open() {
        return closedBy == null;
    }

    /** Gives the ring up: the worker stops serving it, and every call outstanding on it fails (UNAVAILABLE). */
    void close(String why) {
        fail(new LinkFailure(WorkerException.Kind.UNAVAILABLE, Status.Code.CANCELLED, why));
    }

    private void fail(LinkFailure f) {
        if (closedBy == null) {
            closedBy = f;
        }
        rings.close();
        ClientCallStreamObserver<AttachRingRequest> c = call;
        if (c != null) {
            c.cancel(f.getMessage(), null);
        }
        for (PendingCall p : pending.values()) {
            if (pending.remove(p.id, p)) {
                p.fail(f);
            }
        }
    }

    /** The receiver thread: answers until the ring closes; a message that breaks the protocol ends the ring. */
    private void receive() {
        ShmRing answers = rings.answers();
        try {
            while (closedBy == null && !rings.closed()) {
                if (!answers.await(TimeUnit.SECONDS.toNanos(1), () -> closedBy != null || rings.closed())) {
                    continue;
                }
                MemorySegment m = answers.poll();
                if (m == null) {
                    continue;
                }
                long now = System.nanoTime();
                RingMessages.Answer a;
                try {
                    a = RingMessages.answer(m);
                } finally {
                    answers.release();
                }
                PendingCall p = pending.remove(a.id());
                if (p == null) {
                    fail(new LinkFailure(WorkerException.Kind.GARBAGE, null, "an answer on the shared-memory ring with id " + a.id()
                            + ", which is not an outstanding request"));
                    return;
                }
                if (a.refusal() != null) {
                    p.fail(new LinkFailure(LinkFailure.kindOf(a.refusal()), a.refusal().getCode(), LinkFailure.describe(a.refusal())));
                    continue;
                }
                LinkFailure f = ComputeStream.accept(link, p, a.response(), now);
                if (f != null) {
                    fail(f);
                    return;
                }
            }
        } catch (RuntimeException e) {
            fail(new LinkFailure(WorkerException.Kind.GARBAGE, null, "the shared-memory ring broke: " + e.getMessage()));
            return;
        }
        fail(new LinkFailure(WorkerException.Kind.UNAVAILABLE, null, "the shared-memory ring was closed"));
    }

    /** The AttachRing call: its one event says the worker serves the ring; its end ends the ring. */
    private final class Observer implements ClientResponseObserver<AttachRingRequest, AttachRingEvent> {
        @Override
        public void beforeStart(ClientCallStreamObserver<AttachRingRequest> requests) {
            call = requests;
        }

        @Override
        public void onNext(AttachRingEvent e) {
            if (e.getAttached()) {
                attached.complete(null);
            }
        }

        @Override
        public void onError(Throwable t) {
            Status s = Status.fromThrowable(t);
            if (!attached.completeExceptionally(t)) {
                fail(new LinkFailure(LinkFailure.kindOf(s), s.getCode(), "the worker's shared-memory ring ended: " + LinkFailure.describe(s)));
            }
        }

        @Override
        public void onCompleted() {
            LinkFailure f = new LinkFailure(WorkerException.Kind.UNAVAILABLE, null, "the worker ended its shared-memory ring");
            if (!attached.completeExceptionally(f)) {
                fail(f);
            }
        }
    }
}
