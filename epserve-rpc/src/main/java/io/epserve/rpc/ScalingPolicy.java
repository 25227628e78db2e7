package io.epserve.rpc;

import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Objects;

/**
 * When a pool of expert workers grows or shrinks with load: a pure state machine (no clock, no
 * I/O; the caller passes the time and the measurements), so every decision is unit-tested with
 * integers, as the operator's autoscaler and Kubernetes' HPA separate "what to do" from "doing it".
 *
 * <p>The load is each worker's <em>busy fraction</em>: the time it spent computing experts over
 * the wall time of the last measurement interval (1 = computing all the time). The expert layer is
 * the bottleneck when the workers' mean busy fraction stays at or above {@link Config#scaleUpBusy}
 * for {@link Config#scaleUpWindow}: add a worker. The workers are idle when every one stays at or
 * below {@link Config#scaleDownBusy} for {@link Config#scaleDownWindow}: retire the least busy one
 * (the newest of equals), which drains and exits. After each change nothing else changes for
 * {@link Config#cooldown} (the new placement needs time to take effect and be measured), and while
 * a change is still in progress (a worker starting or draining) the windows start over. Never
 * below {@link Config#minWorkers} or above {@link Config#maxWorkers}; a pool outside those bounds
 * (a worker left on its own) is brought back at once.
 */
public final class ScalingPolicy {

    /**
     * Validated bounds and thresholds (DESIGN.md §3.11).
     *
     * @param minWorkers      fewest workers (at least 1)
     * @param maxWorkers      most workers (at least minWorkers)
     * @param scaleUpBusy     mean busy fraction at or above which the expert layer is the bottleneck, in (0, 1]
     * @param scaleUpWindow   how long it must stay there before a worker is added
     * @param scaleDownBusy   busy fraction at or below which a worker is idle, in [0, scaleUpBusy)
     * @param scaleDownWindow how long every worker must stay idle before one is retired
     * @param cooldown        quiet time after each change
     */
    public record Config(int minWorkers, int maxWorkers, double scaleUpBusy, Duration scaleUpWindow, double scaleDownBusy,
                         Duration scaleDownWindow, Duration cooldown) {
        public static final double DEFAULT_SCALE_UP_BUSY = 0.8;
        public static final Duration DEFAULT_SCALE_UP_WINDOW = Duration.ofSeconds(10);
        public static final double DEFAULT_SCALE_DOWN_BUSY = 0.1;
        public static final Duration DEFAULT_SCALE_DOWN_WINDOW = Duration.ofSeconds(60);
        public static final Duration DEFAULT_COOLDOWN = Duration.ofSeconds(30);

        public Config {
            Objects.requireNonNull(scaleUpWindow, "scaleUpWindow");
            Objects.requireNonNull(scaleDownWindow, "scaleDownWindow");
            Objects.requireNonNull(cooldown, "cooldown");
            if (minWorkers < 1) {
                throw new IllegalArgumentException("the fewest workers must be at least 1, got " + minWorkers);
            }
            if (maxWorkers < minWorkers) {
                throw new IllegalArgumentException("the most workers (" + maxWorkers + ") must be at least the fewest (" + minWorkers + ")");
            }
            if (!(scaleUpBusy > 0 && scaleUpBusy <= 1)) {
                throw new IllegalArgumentException("the scale-up busy fraction must be in (0, 1], got " + scaleUpBusy);
            }
            if (!(scaleDownBusy >= 0 && scaleDownBusy < scaleUpBusy)) {
                throw new IllegalArgumentException("the scale-down busy fraction must be in [0, " + scaleUpBusy + ") (below the scale-up one), got "
                        + scaleDownBusy);
            }
            for (Duration d : List.of(scaleUpWindow, scaleDownWindow, cooldown)) {
                if (d.isNegative()) {
                    throw new IllegalArgumentException("scaling windows and cooldown must not be negative, got " + d);
                }
            }
        }

        /** A fixed pool of {@code n} workers: never scales. */
        public static Config fixed(int n) {
            return new Config(n, n, DEFAULT_SCALE_UP_BUSY, DEFAULT_SCALE_UP_WINDOW, DEFAULT_SCALE_DOWN_BUSY, DEFAULT_SCALE_DOWN_WINDOW,
                    DEFAULT_COOLDOWN);
        }

        public boolean scales() {
            return maxWorkers > minWorkers;
        }
    }

    /** One worker's busy fraction over the last interval, by its address. */
    public record WorkerLoad(String worker, double busy) {
        public WorkerLoad {
            Objects.requireNonNull(worker, "worker");
            if (!(busy >= 0) || Double.isInfinite(busy)) {
                throw new IllegalArgumentException("busy fraction of " + worker + " must be a number >= 0, got " + busy);
            }
        }
    }

    /** What to do now. */
    public sealed interface Decision {
        /** Nothing (why, for logs and tests). */
        record Hold(String why) implements Decision {}

        /** Start one more worker. */
        record Add(String why) implements Decision {}

        /** Drain and stop this worker. */
        record Retire(String worker, String why) implements Decision {}
    }

    private final Config config;
    /** When the current overloaded / idle stretch started, or -1 outside one. */
    private long overloadedSince = -1;
    private long idleSince = -1;
    private long lastChange = -1;

    public ScalingPolicy(Config config) {
        this.config = Objects.requireNonNull(config, "config");
    }

    public Config config() {
        return config;
    }

    /**
     * The decision at time {@code nanos} (any monotonic origin) for a pool of {@code workers}, given
     * {@code loads} (the workers measured over the last interval, in pool order; a worker just added
     * may not be measured yet) and whether the pool is {@code settled} (no worker starting or
     * draining). An Add or Retire is taken as done: the caller carries it out.
     */
    public Decision decide(long nanos, int workers, List<WorkerLoad> loads, boolean settled) {
        if (!settled) {
            overloadedSince = -1;
            idleSince = -1;
            return new Decision.Hold("a change is in progress");
        }
        if (workers < config.minWorkers()) {
            return changed(nanos, new Decision.Add(workers + " worker(s), fewer than the " + config.minWorkers() + " at least"));
        }
        if (workers > config.maxWorkers() && !loads.isEmpty()) {
            return changed(nanos, new Decision.Retire(leastBusy(loads).worker(), workers + " worker(s), more than the "
                    + config.maxWorkers() + " at most"));
        }
        if (loads.isEmpty()) {
            overloadedSince = -1;
            idleSince = -1;
            return new Decision.Hold("no worker measured");
        }
        double mean = 0;
        double max = 0;
        for (WorkerLoad l : loads) {
            mean += l.busy();
            max = Math.max(max, l.busy());
        }
        mean /= loads.size();
        boolean overloaded = mean >= config.scaleUpBusy();
        boolean idle = max <= config.scaleDownBusy();
        overloadedSince = overloaded ? (overloadedSince < 0 ? nanos : overloadedSince) : -1;
        idleSince = idle ? (idleSince < 0 ? nanos : idleSince) : -1;
        boolean cooling = lastChange >= 0 && nanos - lastChange < config.cooldown().toNanos();
        if (overloaded && nanos - overloadedSince >= config.scaleUpWindow().toNanos()) {
            if (workers >= config.maxWorkers()) {
                return new Decision.Hold(String.format(Locale.ROOT, "busy %.2f, but already %d worker(s), the most", mean, workers));
            }
            if (!cooling) {
                return changed(nanos, new Decision.Add(String.format(Locale.ROOT, "mean busy fraction %.2f >= %.2f for %d ms", mean,
                        config.scaleUpBusy(), (nanos - overloadedSince) / 1_000_000)));
            }
        }
        if (idle && nanos - idleSince >= config.scaleDownWindow().toNanos()) {
            if (workers <= config.minWorkers()) {
                return new Decision.Hold(String.format(Locale.ROOT, "idle, but already %d worker(s), the fewest", workers));
            }
            if (!cooling) {
                return changed(nanos, new Decision.Retire(leastBusy(loads).worker(), String.format(Locale.ROOT,
                        "every worker's busy fraction <= %.2f for %d ms", config.scaleDownBusy(), (nanos - idleSince) / 1_000_000)));
            }
        }
        return new Decision.Hold(cooling ? "cooling down after a change" : String.format(Locale.ROOT, "mean busy fraction %.2f", mean));
    }

    private Decision changed(long nanos, Decision d) {
        lastChange = nanos;
        overloadedSince = -1;
        idleSince = -1;
        return d;
    }

    /** The least busy worker; among equals the last in pool order (the newest). */
    private static WorkerLoad leastBusy(List<WorkerLoad> loads) {
        WorkerLoad best = loads.getFirst();
        for (WorkerLoad l : loads) {
            if (l.busy() <= best.busy()) {
                best = l;
            }
        }
        return best;
    }
}
