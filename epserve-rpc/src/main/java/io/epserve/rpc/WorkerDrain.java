package io.epserve.rpc;

import java.io.PrintStream;
import java.time.Duration;
import java.util.concurrent.locks.LockSupport;

/**
 * How a worker leaves on SIGTERM without failing a request: it reports DRAINING in Info, tells the
 * frontend it joined that it leaves, and keeps answering Compute for the epoch it holds while the
 * frontend places its experts elsewhere; the frontend then sends Release. The worker stops once
 * released, at once when no frontend holds it, or after the drain timeout (a frontend that never
 * reacts must not keep it forever). The process then exits 0: a supervisor reads that as "left on
 * purpose" and does not restart it.
 */
public final class WorkerDrain {
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(60);
    /** How often the drain looks whether the holder released the worker. */
    private static final Duration POLL = Duration.ofMillis(50);

    /** How a drain ended. */
    public enum Outcome {
        /** No frontend held the worker. */
        NOT_HELD,
        /** The holder released it. */
        RELEASED,
        /** The timeout passed with the worker still held. */
        TIMED_OUT
    }

    private WorkerDrain() {}

    /**
     * Drains {@code server} (see the class comment); returns once it may stop. {@code join} is the
     * worker's registration, or null when it was not started with --join.
     */
    public static Outcome drain(WorkerServer server, WorkerJoin join, Duration timeout, PrintStream log) {
        String name = server.name();
        server.drain();
        if (!server.held()) {
            if (join != null) {
                join.leave();
            }
            log.println("epserve worker " + name + ": draining: no frontend holds it, leaving now");
            log.flush();
            return Outcome.NOT_HELD;
        }
        log.println("epserve worker " + name + ": draining: serving the current placement epoch until the frontend releases it "
                + "(at most " + timeout.toSeconds() + " s)");
        log.flush();
        if (join != null) {
            join.leave();
        }
        long end = System.nanoTime() + timeout.toNanos();
        while (server.held()) {
            if (System.nanoTime() - end >= 0) {
                log.println("epserve worker " + name + ": drain timeout of " + timeout.toSeconds() + " s passed and a frontend still "
                        + "holds it: leaving anyway (its frontend computes the experts itself until it re-places them)");
                log.flush();
                return Outcome.TIMED_OUT;
            }
            LockSupport.parkNanos(POLL.toNanos()); // the release comes over the network; this only paces the look
        }
        log.println("epserve worker " + name + ": released by its frontend, leaving");
        log.flush();
        return Outcome.RELEASED;
    }
}
