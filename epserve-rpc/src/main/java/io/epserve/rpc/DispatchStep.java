package io.epserve.rpc;

import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The answers one dispatch waits for: a synchronous caller sleeps once ({@link #await}), an
 * asynchronous one is called back once ({@link #whenDone}), at the last answer, the first
 * failure that cannot be retried, or the deadline.
 */
final class DispatchStep {
    /** Fires the deadlines of asynchronous dispatches; one daemon thread for the JVM. */
    private static final ScheduledThreadPoolExecutor DEADLINES = daemonTimer();

    private final long deadlineNanos;
    private int remaining;
    private boolean failed;
    private Runnable callback;
    private boolean fired;
    private ScheduledFuture<?> timer;

    DispatchStep(long deadlineNanos) {
        this.deadlineNanos = deadlineNanos;
    }

    synchronized void expect() {
        remaining++;
    }

    void done(boolean fatal) {
        boolean complete;
        synchronized (this) {
            remaining--;
            failed |= fatal;
            complete = remaining == 0 || fatal;
            if (complete) {
                notifyAll();
            }
        }
        if (complete) {
            fire();
        }
    }

    /** Runs {@code r} once when the step is complete or its deadline has passed (now, if it is). */
    void whenDone(Runnable r) {
        boolean now;
        synchronized (this) {
            callback = r;
            now = remaining == 0 || failed;
            if (!now) {
                timer = DEADLINES.schedule(this::fire, deadlineNanos - System.nanoTime(), TimeUnit.NANOSECONDS);
            }
        }
        if (now) {
            fire();
        }
    }

    private void fire() {
        Runnable r;
        synchronized (this) {
            if (fired || callback == null) {
                return;
            }
            fired = true;
            r = callback;
            if (timer != null) {
                timer.cancel(false);
            }
        }
        r.run();
    }

    synchronized void await() {
        boolean interrupted = false;
        try {
            while (remaining > 0 && !failed) {
                long left = deadlineNanos - System.nanoTime();
                if (left <= 0) {
                    return;
                }
                try {
                    TimeUnit.NANOSECONDS.timedWait(this, left);
                } catch (InterruptedException e) {
                    interrupted = true;
                    return;
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private static ScheduledThreadPoolExecutor daemonTimer() {
        ScheduledThreadPoolExecutor t = new ScheduledThreadPoolExecutor(1, r -> {
            Thread th = new Thread(r, "epserve-dispatch-deadlines");
            th.setDaemon(true);
            return th;
        });
        t.setRemoveOnCancelPolicy(true);
        return t;
    }
}
