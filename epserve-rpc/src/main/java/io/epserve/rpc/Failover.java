package io.epserve.rpc;

import io.epserve.moe.ExpertDispatcher;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BooleanSupplier;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * What the frontend does when its expert workers fail a step: it computes the step's experts
 * itself, from weights it maps from the same files (or the same converted-experts cache) as the
 * workers, so the step completes instead of failing its requests. The combine is exact and
 * independent of how experts are grouped ({@link io.epserve.moe.ExactCombine}), so the step has
 * the same bits as if the workers had answered.
 *
 * <p>After a failure the frontend keeps computing locally (<em>holding</em>) while a background
 * probe asks every worker whether it answers again (a unary call with the dispatch deadline);
 * once all do, dispatches go to the workers again — a worker that came back empty is assigned
 * by the dispatcher at its first call. So a dead worker costs one failed round trip, and a hung one
 * one deadline, not one per step. A late answer of a failed step is never combined: that step's
 * calls were given up.
 *
 * <p>Holding computes every expert of a layer in the frontend, so it runs at single-process speed:
 * it keeps requests alive; restoring the workers (the supervisor of {@code epserve cluster}, or a
 * re-placement) restores the speed.
 */
public final class Failover {
    /** Counters and state, for metrics and tests. */
    public record Stats(long failovers, long localDispatches, boolean holding, String lastFailure) {}

    private final Supplier<ExpertDispatcher> localFactory;
    private final Duration probeInterval;
    private volatile ExpertDispatcher local;
    private final AtomicBoolean holding = new AtomicBoolean();
    private final LongAdder failovers = new LongAdder();
    private final LongAdder localDispatches = new LongAdder();
    private volatile String lastFailure = "";
    private volatile boolean closed;
    private final Consumer<String> events;

    /** {@code events} hears, in a sentence each, when the frontend takes a step over and when the workers are back. */
    Failover(Supplier<ExpertDispatcher> localFactory, Duration probeInterval, Consumer<String> events) {
        this.localFactory = Objects.requireNonNull(localFactory, "localFactory");
        this.probeInterval = Objects.requireNonNull(probeInterval, "probeInterval");
        this.events = Objects.requireNonNull(events, "events");
        if (probeInterval.isNegative() || probeInterval.isZero()) {
            throw new IllegalArgumentException("the failover probe interval must be positive, got " + probeInterval);
        }
    }

    boolean holding() {
        return holding.get();
    }

    /** The frontend's own dispatcher over every expert, made on first use (it maps the experts then). */
    ExpertDispatcher local() {
        ExpertDispatcher d = local;
        if (d == null) {
            synchronized (this) {
                d = local;
                if (d == null) {
                    d = localFactory.get();
                    local = d;
                }
            }
        }
        localDispatches.increment();
        return d;
    }

    /**
     * A step failed on the workers: count it, hold, and (the first time) start the probe that ends
     * the hold once {@code allAnswer} is true.
     */
    void failed(WorkerException e, BooleanSupplier allAnswer) {
        failovers.increment();
        lastFailure = e.getMessage();
        if (holding.compareAndSet(false, true)) {
            events.accept("the frontend computes the experts itself (same bits) until its workers answer again or are placed out: "
                    + e.getMessage());
            Thread.ofVirtual().name("epserve-failover-probe").start(() -> probe(allAnswer));
        }
    }

    private void probe(BooleanSupplier allAnswer) {
        while (!closed) {
            try {
                Thread.sleep(probeInterval); // the probe's pace: it must not busy-ask a dead worker
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            boolean back;
            try {
                back = allAnswer.getAsBoolean();
            } catch (RuntimeException e) {
                back = false;
            }
            if (back) {
                holding.set(false);
                events.accept("every expert worker answers again: the workers compute the experts");
                return;
            }
        }
    }

    Stats stats() {
        return new Stats(failovers.sum(), localDispatches.sum(), holding.get(), lastFailure);
    }

    void close() {
        closed = true;
        ExpertDispatcher d = local;
        if (d != null) {
            d.close();
        }
    }
}
