package io.epserve.rpc;

import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executors;
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
 * <p>What happens is reported as {@link Event}s, on the supervisor's own thread. Close the
 * supervisor before the processes, or it restarts the workers that {@code close()} stops.
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
    }

    private final LocalWorkerProcesses workers;
    private final Backoff backoff;
    private final Consumer<Event> events;
    private final ScheduledExecutorService thread;
    private final int[] failuresInARow;
    private final long[] upSince;
    private volatile boolean closed;

    private WorkerSupervisor(LocalWorkerProcesses workers, Backoff backoff, Consumer<Event> events) {
        this.workers = workers;
        this.backoff = backoff;
        this.events = events;
        this.thread = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-worker-supervisor");
            t.setDaemon(true);
            return t;
        });
        this.failuresInARow = new int[workers.size()];
        this.upSince = new long[workers.size()];
    }

    /** Starts watching every worker of {@code workers}. */
    public static WorkerSupervisor start(LocalWorkerProcesses workers, Backoff backoff, Consumer<Event> events) {
        WorkerSupervisor s = new WorkerSupervisor(Objects.requireNonNull(workers, "workers"), Objects.requireNonNull(backoff, "backoff"),
                Objects.requireNonNull(events, "events"));
        for (int i = 0; i < workers.size(); i++) {
            s.upSince[i] = System.nanoTime();
            s.watch(i, workers.process(i));
        }
        return s;
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
        if (code == 0) {
            emit(new Event.Left(i, address, gone.pid()));
            return;
        }
        if (System.nanoTime() - upSince[i] >= backoff.resetAfter().toNanos()) {
            failuresInARow[i] = 0;
        }
        Duration delay = backoff.delay(++failuresInARow[i]);
        emit(new Event.Died(i, address, gone.pid(), code, delay));
        thread.schedule(() -> restart(i, diedAt), delay.toNanos(), TimeUnit.NANOSECONDS);
    }

    private void restart(int i, long diedAt) {
        if (closed) {
            return;
        }
        String address = workers.address(i);
        try {
            workers.restart(i);
        } catch (RuntimeException e) {
            Duration delay = backoff.delay(++failuresInARow[i]);
            emit(new Event.RestartFailed(i, address, e.getMessage(), delay));
            thread.schedule(() -> restart(i, diedAt), delay.toNanos(), TimeUnit.NANOSECONDS);
            return;
        }
        Process p = workers.process(i);
        upSince[i] = System.nanoTime();
        emit(new Event.Restarted(i, workers.address(i), p.pid(), Duration.ofNanos(upSince[i] - diedAt), failuresInARow[i]));
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
