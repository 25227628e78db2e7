package io.epserve.deploy;

import java.time.Duration;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/** Polls a condition until it holds or a deadline passes (then fails, with the last answer). */
final class Await {
    private Await() {}

    /** Returns the first non-null answer of {@code probe}; a probe that throws counts as "not yet". */
    static <T> T until(String what, Duration timeout, Callable<T> probe) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        Exception last = null;
        while (true) {
            try {
                T answer = probe.call();
                if (answer != null) {
                    return answer;
                }
            } catch (InterruptedException e) {
                throw e;
            } catch (Exception | AssertionError e) {
                last = e instanceof Exception ex ? ex : new Exception(e);
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for " + what, last);
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(100));
            if (Thread.interrupted()) {
                throw new InterruptedException();
            }
        }
    }
}
