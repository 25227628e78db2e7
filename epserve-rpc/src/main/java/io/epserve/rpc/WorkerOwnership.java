package io.epserve.rpc;

import io.epserve.rpc.v1.Holder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * Which frontend a worker belongs to. The first Assign from a frontend while no other holds the
 * worker makes it the holder; Assign and Compute from any other frontend are refused with
 * PERMISSION_DENIED until the holder releases the worker, or has sent nothing for the lease time:
 * a frontend that crashed does not keep its workers forever, and a frontend that only paused
 * keeps them as long as nobody else asked. Every call of the holder renews the lease (a serving
 * frontend with no traffic renews it through its readiness checks).
 *
 * <p>Within one holder the placement epoch is the fence: an Assign below the highest epoch the
 * holder assigned is a stale (delayed) one and is refused.
 */
final class WorkerOwnership {
    public static final Duration DEFAULT_LEASE = Duration.ofSeconds(30);

    private record Lease(String frontend, long maxEpoch) {}

    private final Duration lease;
    private final Supplier<String> name;
    private final LongSupplier clock;
    private volatile Lease holder;
    private volatile long lastSeen;

    WorkerOwnership(Duration lease, Supplier<String> name) {
        this(lease, name, System::nanoTime);
    }

    WorkerOwnership(Duration lease, Supplier<String> name, LongSupplier clock) {
        if (lease.isNegative() || lease.isZero()) {
            throw new IllegalArgumentException("lease timeout must be positive, got " + lease);
        }
        this.lease = lease;
        this.name = name;
        this.clock = clock;
    }

    Duration lease() {
        return lease;
    }

    /**
     * Before an Assign of {@code epoch} by {@code frontend}: takes the worker when free (or its
     * holder's lease expired), checks the fence; throws the refusal otherwise. The caller commits
     * with {@link #assigned} once the share is in place.
     */
    synchronized void beforeAssign(String frontend, long epoch) {
        requireId(frontend, "Assign");
        Lease h = holder;
        if (h != null && !h.frontend.equals(frontend)) {
            long silentNanos = clock.getAsLong() - lastSeen;
            if (silentNanos < lease.toNanos()) {
                throw heldByOther(silentNanos);
            }
        } else if (h != null && epoch < h.maxEpoch) {
            throw Status.FAILED_PRECONDITION.withDescription("worker " + name.get() + ": Assign of placement epoch " + epoch
                    + " is older than epoch " + h.maxEpoch + " this frontend assigned already (a stale Assign)").asRuntimeException();
        }
    }

    /** After a successful Assign: {@code frontend} holds the worker, up to {@code epoch}. */
    synchronized void assigned(String frontend, long epoch) {
        Lease h = holder;
        long max = h != null && h.frontend.equals(frontend) ? Math.max(h.maxEpoch, epoch) : epoch;
        holder = new Lease(frontend, max);
        lastSeen = clock.getAsLong();
    }

    /**
     * Before a Compute (or any call that needs the worker held by its caller): renews the lease.
     * Not held at all: FAILED_PRECONDITION (the frontend assigns, then retries); held by another:
     * PERMISSION_DENIED.
     */
    void requireHolder(String frontend) {
        requireId(frontend, "Compute");
        Lease h = holder;
        if (h == null) {
            throw Status.FAILED_PRECONDITION.withDescription("worker " + name.get()
                    + " is not assigned (released, or no Assign since it started): Assign, then retry").asRuntimeException();
        }
        if (!h.frontend.equals(frontend)) {
            throw heldByOther(clock.getAsLong() - lastSeen);
        }
        lastSeen = clock.getAsLong();
    }

    /**
     * Who holds the worker as seen by {@code frontend}; renews the lease when that is the holder.
     * Another holder whose lease expired counts as none: the next Assign takes the worker.
     */
    Holder holderFor(String frontend) {
        Lease h = holder;
        if (h == null) {
            return Holder.HOLDER_NONE;
        }
        if (h.frontend.equals(frontend)) {
            lastSeen = clock.getAsLong();
            return Holder.HOLDER_CALLER;
        }
        return clock.getAsLong() - lastSeen < lease.toNanos() ? Holder.HOLDER_OTHER : Holder.HOLDER_NONE;
    }

    /** Refuses {@code frontend} early when another frontend holds the worker with a live lease (no lock: re-checked on Assign). */
    void requireNotHeldByOther(String frontend) {
        requireId(frontend, "Assign");
        if (holderFor(frontend) == Holder.HOLDER_OTHER) {
            throw heldByOther(clock.getAsLong() - lastSeen);
        }
    }

    /** Whether some frontend holds the worker with a live lease (a draining worker waits for this to end). */
    boolean held() {
        return holder != null && clock.getAsLong() - lastSeen < lease.toNanos();
    }

    /** The holder gives the worker up; false when {@code frontend} did not hold it. */
    synchronized boolean release(String frontend) {
        requireId(frontend, "Release");
        Lease h = holder;
        if (h == null) {
            return false;
        }
        if (!h.frontend.equals(frontend)) {
            throw heldByOther(clock.getAsLong() - lastSeen);
        }
        holder = null;
        return true;
    }

    private StatusRuntimeException heldByOther(long silentNanos) {
        return Status.PERMISSION_DENIED.withDescription("worker " + name.get() + " is held by another frontend (its last call "
                + Math.max(0, silentNanos / 1_000_000_000L) + " s ago); it is free once that frontend releases it or sends nothing for "
                + lease.toSeconds() + " s (the worker's --lease-timeout)").asRuntimeException();
    }

    private void requireId(String frontend, String call) {
        if (frontend == null) {
            throw Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": " + call + " without the "
                    + FrontendCredentials.FRONTEND_ID_HEADER + " header").asRuntimeException();
        }
    }
}
