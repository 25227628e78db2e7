package io.epserve.rpc;

import com.google.protobuf.InvalidProtocolBufferException;
import io.epserve.rpc.shm.RingFile;
import io.epserve.rpc.shm.ShmRing;
import io.epserve.rpc.v1.AttachRingEvent;
import io.epserve.rpc.v1.AttachRingRequest;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A worker's side of AttachRing (expert.proto): the shared-memory rings its frontend attached,
 * one thread each, which answers every request on the ring with the same computation and checks
 * as a Compute on the stream ({@link ExpertWorkerService#computeFor}). A ring thread sleeps on
 * the ring's futex while no request comes (an idle worker uses no CPU); it ends when the
 * frontend cancels the AttachRing call (it closed, or died), when either side closes the ring,
 * or when the worker shuts down, and then ends the call.
 */
final class WorkerRings {
    /** How long a ring thread waits for room for an answer before it gives the ring up (the frontend stopped reading). */
    private static final long ANSWER_ROOM_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(30);

    private final Supplier<String> name;
    private final WorkerOwnership ownership;
    private final ExpertWorkerService service;
    private final Set<Ring> live = ConcurrentHashMap.newKeySet();
    private volatile boolean closed;

    WorkerRings(Supplier<String> name, WorkerOwnership ownership, ExpertWorkerService service) {
        this.name = name;
        this.ownership = ownership;
        this.service = service;
    }

    /** Serves the ring the request names, or refuses it (the frontend then uses the stream). */
    void attach(String frontend, AttachRingRequest req, StreamObserver<AttachRingEvent> out) {
        ServerCallStreamObserver<AttachRingEvent> call = (ServerCallStreamObserver<AttachRingEvent>) out;
        Ring ring;
        try {
            ownership.requireHolder(frontend);
            ring = new Ring(frontend, open(req), call);
        } catch (StatusRuntimeException e) {
            call.onError(e);
            return;
        }
        call.setOnCancelHandler(ring::stop);
        live.add(ring);
        call.onNext(AttachRingEvent.newBuilder().setAttached(true).build());
        if (closed) {
            ring.stop();
        }
        Thread t = new Thread(ring::serve, "epserve-shm-ring-" + frontend);
        t.setDaemon(true);
        t.start();
    }

    private RingFile open(AttachRingRequest req) {
        String host = RingFile.hostId();
        if (host.isEmpty() || !host.equals(req.getHostId())) {
            throw refuse("is not on the frontend's host");
        }
        Path dir = RingFile.defaultDir();
        if (dir == null) {
            throw refuse("has no shared-memory folder ($" + RingFile.DIR_ENV + " or /dev/shm)");
        }
        try {
            return RingFile.open(dir, req.getRingName(), req.getToken().toByteArray(), RingFile.SPIN_NANOS);
        } catch (IllegalArgumentException e) {
            throw Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": " + e.getMessage()).asRuntimeException();
        } catch (NoSuchFileException e) {
            throw refuse("finds no ring file " + req.getRingName() + " in its shared-memory folder");
        } catch (IOException | RuntimeException e) {
            throw refuse("cannot serve ring " + req.getRingName() + ": " + e.getMessage());
        }
    }

    private StatusRuntimeException refuse(String why) {
        return Status.FAILED_PRECONDITION.withDescription("worker " + name.get() + " " + why + ": use the Compute stream")
                .asRuntimeException();
    }

    /** Ends every ring (the worker shuts down); their calls complete. */
    void close() {
        closed = true;
        for (Ring r : live) {
            r.stop();
        }
    }

    /** One attached ring and the call that keeps it. */
    private final class Ring {
        private final String frontend;
        private final RingFile file;
        private final ServerCallStreamObserver<AttachRingEvent> call;
        private volatile boolean stopped;

        Ring(String frontend, RingFile file, ServerCallStreamObserver<AttachRingEvent> call) {
            this.frontend = frontend;
            this.file = file;
            this.call = call;
        }

        void stop() {
            stopped = true;
            file.close();
        }

        private boolean done() {
            return stopped || file.closed();
        }

        void serve() {
            ShmRing requests = file.requests();
            ShmRing answers = file.answers();
            Status end = Status.OK;
            try {
                while (!done()) {
                    if (!requests.await(TimeUnit.SECONDS.toNanos(1), this::done)) {
                        continue;
                    }
                    MemorySegment m = requests.poll();
                    if (m == null) {
                        continue;
                    }
                    ComputeRequest req;
                    try {
                        req = RingMessages.request(m);
                    } catch (InvalidProtocolBufferException e) {
                        end = Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": a ring message that is no ComputeRequest: "
                                + e.getMessage());
                        break;
                    } finally {
                        requests.release();
                    }
                    if (!answer(answers, req)) {
                        end = Status.DEADLINE_EXCEEDED.withDescription("worker " + name.get()
                                + ": the frontend took no answer off the ring for 30 s");
                        break;
                    }
                }
            } catch (RuntimeException e) {
                // a ring whose contents cannot be right (ShmRing.RingCorruptException), or a bug: the ring ends, the worker goes on
                end = Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": the ring broke: " + e.getMessage());
            } finally {
                live.remove(this);
                file.close();
                finish(end);
            }
        }

        /** Computes and puts the answer (or the refusal) of one request on the answer ring; false when there is no room for it. */
        private boolean answer(ShmRing answers, ComputeRequest req) {
            ComputeResponse resp = null;
            Status refusal = null;
            try {
                resp = service.computeFor(frontend, req);
            } catch (RuntimeException e) {
                refusal = service.refusal(req, e).getStatus();
            }
            if (resp != null && RingMessages.answerBytes(resp) > answers.maxMessage()) {
                refusal = Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": request " + req.getId()
                        + ": the answer does not fit the ring");
                resp = null;
            }
            byte[] description = refusal == null ? null : RingMessages.description(refusal);
            int size = resp != null ? RingMessages.answerBytes(resp) : RingMessages.refusalBytes(description);
            MemorySegment room = answers.claim(size, ANSWER_ROOM_TIMEOUT_NANOS, this::done);
            if (room == null) {
                return done();
            }
            if (resp != null) {
                RingMessages.writeAnswer(resp, room);
            } else {
                RingMessages.writeRefusal(req.getId(), refusal, description, room);
            }
            answers.publish();
            return true;
        }

        private void finish(Status end) {
            try {
                if (end.isOk()) {
                    call.onCompleted();
                } else {
                    call.onError(end.asRuntimeException());
                }
            } catch (RuntimeException e) {
                // the call was cancelled already (the frontend gave the ring up): nothing to tell
            }
        }
    }
}
