package io.epserve.rpc;

import java.time.Duration;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * Keeps the worker processes of a {@link LocalWorkerProcesses} running: a worker that dies (killed,
 * crashed, any non-zero exit) is started again on the address it had, after a backoff that doubles
 * with each failure in a row and starts over once a worker has stayed up for a while (as
 * Kubernetes restarts a crashing container). A worker that exits 0 left on purpose (it drained) and
 * is not restarted. A restarted worker comes back empty; the frontend assigns it again at its next
 * call (a worker that lost its share answers FAILED_PRECONDITION, and the dispatcher re-assigns),
 * mapping its experts from the checkpoint or the converted-experts cache without converting again.
 *
 * <p>The pool can grow and shrink while supervised: {@link #add()} starts one more worker and
 * watches it; {@link #retire} asks one to leave (SIGTERM: it drains and exits 0) and kills it if it
 * has not left after a drain timeout; a retired worker is never restarted, whatever its exit code.
 *
 * <p>What happens is reported as {@link Event}s, on the supervisor's own thread (an added worker
 * on the caller's). Close the supervisor before the processes, or it restarts the workers that
 * {@code close()} stops.
 */
public final class WorkerSupervisor implements AutoCloseable {

    /**
     * Restart delays: {@code initial} after the first failure, doubled after each further failure
     * in a row, at most {@code max}; a worker up for {@code resetAfter} starts over at {@code initial}.
     */
    public record Backoff(Duration initial, Duration max, Duration resetAfter) {
        public static final Backoff DEFAULT = new Backoff(Duration.ofMillis(250), Duration.ofSeconds(30), Duration.ofSeconds(60));

        public Backoff {
            Objects.requireNonNull(initial, "initial");
            Objects.requireNonNull(max, "max");
            Objects.requireNonNull(resetAfter, "resetAfter");
            if (initial.isNegative() || max.compareTo(initial) < 0 || resetAfter.isNegative()) {
                throw new IllegalArgumentException("restart backoff needs 0 <= initial <= max and resetAfter >= 0, got " + initial + ", "
                        + max + ", " + resetAfter);
            }
        }

        /** The delay before restart number {@code failuresInARow} (1 for the first). */
        public Duration delay(int failuresInARow) {
            Duration d = initial;
            for (int i = 1; i < failuresInARow && d.compareTo(max) < 0; i++) {
                d = d.multipliedBy(2);
            }
            return d.compareTo(max) > 0 ? max : d;
        }
    }

    /** What the supervisor saw or did. */
    public sealed interface Event {
        int worker();

        String address();

        /** The worker's process ended with a non-zero code; a restart follows after {@code delay}. */
        record Died(int worker, String address, long pid, int exitCode, Duration delay) implements Event {}

        /** The worker listens again, {@code downtime} after it died ({@code attempt}: failures in a row so far). */
        record Restarted(int worker, String address, long pid, Duration downtime, int attempt) implements Event {}

        /** A restart failed; another follows after {@code delay}. */
        record RestartFailed(int worker, String address, String reason, Duration delay) implements Event {}

        /** The worker exited 0 (it drained and left): not restarted. */
        record Left(int worker, String address, long pid) implements Event {}

        /** A worker was added to the pool and listens, {@code startup} after it was launched. */
        record Added(int worker, String address, long pid, Duration startup) implements Event {}

        /**
         * A worker that was asked to leave ({@link #retire}) is gone, {@code drain} after it was
         * asked: exit code 0 when it drained, another when it failed to or was killed at the drain timeout.
         */
        record Retired(int worker, String address, long pid, int exitCode, Duration drain) implements Event {}
    }

    private final LocalWorkerProcesses workers;
    private final Backoff backoff;
    private final Consumer<Event> events;
    private final ScheduledExecutorService thread;
    /** Per worker index; touched on the supervisor's thread (and once by whoever adds the worker, before it is watched). */
    private final Map<Integer, Watch> watches = new ConcurrentHashMap<>();
    private volatile boolean closed;

    private static final class Watch {
        int failuresInARow;
        volatile long upSince = System.nanoTime();
        /** When the worker was asked to leave, or 0. */
        long retiredAt;
        boolean retiredReported;
    }

    private WorkerSupervisor(LocalWorkerProcesses workers, Backoff backoff, Consumer<Event> events) {
        this.workers = workers;
        this.backoff = backoff;
        this.events = events;
        this.thread = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-worker-supervisor");
            t.setDaemon(true);
            return t;
        });
    }

    /** Starts watching every worker of {@code workers}. */
    public static WorkerSupervisor start(LocalWorkerProcesses workers, Backoff backoff, Consumer<Event> events) {
        WorkerSupervisor s = new WorkerSupervisor(Objects.requireNonNull(workers, "workers"), Objects.requireNonNull(backoff, "backoff"),
                Objects.requireNonNull(events, "events"));
        for (int i = 0; i < workers.size(); i++) {
            s.watches.put(i, new Watch());
            s.watch(i, workers.process(i));
        }
        return s;
    }

    /**
     * Starts one more worker (blocking until it listens, on the caller's thread), supervises it
     * like the others and reports {@link Event.Added}; returns its index.
     */
    public int add() {
        if (closed) {
            throw new IllegalStateException("the supervisor is closed: no worker is added");
        }
        long t0 = System.nanoTime();
        int i = workers.add();
        Process p = workers.process(i);
        watches.put(i, new Watch());
        watch(i, p);
        emit(new Event.Added(i, workers.address(i), p.pid(), Duration.ofNanos(System.nanoTime() - t0)));
        return i;
    }

    /**
     * Asks worker {@code i} to leave (SIGTERM: it drains, then exits 0); if it is still running
     * after {@code drainTimeout} it is killed. Either way it is not restarted, and
     * {@link Event.Retired} reports its end.
     */
    public void retire(int i, Duration drainTimeout) {
        Watch w = watches.get(i);
        if (w == null) {
            throw new IllegalArgumentException("no worker " + i);
        }
        // on the supervisor's thread, as exits and restarts are: a worker that died just now is
        // then either restarted before this (and is told to leave) or never
        thread.execute(() -> {
            w.retiredAt = System.nanoTime();
            workers.retire(i);
            Process p = workers.process(i);
            if (!p.isAlive()) {
                retired(i, w, p, w.retiredAt); // dead and waiting for a restart that now will not come
                return;
            }
            thread.schedule(() -> {
                if (p.isAlive()) {
                    p.destroyForcibly(); // it did not drain in time; its exit reports as Retired with the kill's code
                }
            }, drainTimeout.toNanos(), TimeUnit.NANOSECONDS);
        });
    }

    private void retired(int i, Watch w, Process gone, long at) {
        if (w.retiredReported) {
            return;
        }
        w.retiredReported = true;
        emit(new Event.Retired(i, workers.address(i), gone.pid(), gone.isAlive() ? -1 : gone.exitValue(),
                Duration.ofNanos(Math.max(0, at - w.retiredAt))));
    }

    private void watch(int i, Process p) {
        p.onExit().thenAccept(gone -> {
            if (!closed) {
                thread.execute(() -> exited(i, gone, System.nanoTime()));
            }
        });
    }

    private void exited(int i, Process gone, long diedAt) {
        if (closed) {
            return;
        }
        String address = workers.address(i);
        int code = gone.exitValue();
        Watch w = watches.get(i);
        if (workers.retiring(i)) {
            retired(i, w, gone, diedAt);
            return;
        }
        if (code == 0) {
            emit(new Event.Left(i, address, gone.pid()));
            return;
        }
        if (System.nanoTime() - w.upSince >= backoff.resetAfter().toNanos()) {
            w.failuresInARow = 0;
        }
        Duration delay = backoff.delay(++w.failuresInARow);
        emit(new Event.Died(i, address, gone.pid(), code, delay));
        thread.schedule(() -> restart(i, diedAt), delay.toNanos(), TimeUnit.NANOSECONDS);
    }

    /**
     * Restarts worker i off the supervisor's thread (a JVM takes seconds to listen, and a slow one
     * must not hold up another worker's restart), then reports on the supervisor's thread.
     */
    private void restart(int i, long diedAt) {
        if (closed || workers.retiring(i)) {
            return;
        }
        Thread.ofVirtual().name("epserve-worker-restart-" + i).start(() -> {
            RuntimeException failure = null;
            try {
                workers.restart(i);
            } catch (RuntimeException e) {
                failure = e;
            }
            RuntimeException f = failure;
            try {
                thread.execute(() -> restarted(i, diedAt, f));
            } catch (RejectedExecutionException closedMeanwhile) {
                // the supervisor closed while the worker started: the processes' close stops it
            }
        });
    }

    private void restarted(int i, long diedAt, RuntimeException failure) {
        if (closed) {
            return;
        }
        Watch w = watches.get(i);
        if (workers.retiring(i)) {
            // told to leave while it started: it never served, so there is nothing to drain
            Process p = workers.process(i);
            p.destroyForcibly();
            p.onExit().thenAccept(gone -> {
                try {
                    thread.execute(() -> retired(i, w, gone, System.nanoTime()));
                } catch (RejectedExecutionException closedMeanwhile) {
                    // nobody listens any more
                }
            });
            return;
        }
        if (failure != null) {
            Duration delay = backoff.delay(++w.failuresInARow);
            emit(new Event.RestartFailed(i, workers.address(i), failure.getMessage(), delay));
            thread.schedule(() -> restart(i, diedAt), delay.toNanos(), TimeUnit.NANOSECONDS);
            return;
        }
        Process p = workers.process(i);
        w.upSince = System.nanoTime();
        emit(new Event.Restarted(i, workers.address(i), p.pid(), Duration.ofNanos(w.upSince - diedAt), w.failuresInARow));
        watch(i, p);
    }

    private void emit(Event e) {
        try {
            events.accept(e);
        } catch (RuntimeException ignored) {
            // a listener's bug must not stop the supervision
        }
    }

    /** Stops supervising (restarts in progress finish; none start). Idempotent. */
    @Override
    public void close() {
        closed = true;
        thread.shutdownNow();
        try {
            thread.awaitTermination(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
