package io.epserve.moe;

import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.Locale;

/**
 * The frontend's control loop over its placement (DESIGN.md §5): from the sliding window of
 * routed tokens, a {@link BalancedPlacement} of the next epoch, moved to live through
 * {@link PlacementControl#updatePlacement} (workers load in the background; the switch falls
 * between two steps). Triggers: every {@code everySteps} steps, when the current placement's
 * balancedness under the window falls below {@code below} (then at most once per quarter window,
 * so the window refills with traffic of the new placement first), and on demand
 * ({@link #rebalanceNow}). A change that would not raise the lowest layer's balancedness by at
 * least {@value #MIN_GAIN} is skipped; one that fails leaves the current placement serving.
 */
public final class Rebalancer implements AutoCloseable {
    /** Smallest rise of the lowest layer's balancedness worth a change. */
    public static final double MIN_GAIN = 0.01;

    /**
     * @param redundantSlots extra expert slots per worker and layer ({@code --redundant-experts})
     * @param hosts          host label per worker for the hierarchical policy, or null
     * @param everySteps     re-place every this many steps; 0: never on a timer
     * @param below          re-place when a layer's balancedness falls below this; 0: never on it
     * @param checkMillis    how often the loop looks at the triggers
     */
    public record Settings(int redundantSlots, List<String> hosts, long everySteps, double below, long checkMillis) {
        public Settings {
            if (redundantSlots < 0) {
                throw new IllegalArgumentException("--redundant-experts must be 0 or more, got " + redundantSlots);
            }
            if (everySteps < 0) {
                throw new IllegalArgumentException("--rebalance-every must be 0 (off) or a number of steps, got " + everySteps);
            }
            if (!(below >= 0 && below <= 1)) {
                throw new IllegalArgumentException("--rebalance-below must be between 0 (off) and 1, got " + below);
            }
            if (checkMillis < 1) {
                throw new IllegalArgumentException("check interval must be positive, got " + checkMillis);
            }
            hosts = hosts == null ? null : List.copyOf(hosts);
        }

        /** On demand only, one redundant slot per worker. */
        public static Settings onDemand(int redundantSlots) {
            return new Settings(redundantSlots, null, 0, 0, 200);
        }

        boolean automatic() {
            return everySteps > 0 || below > 0;
        }
    }

    /**
     * What one attempt did.
     *
     * @param changed whether a new epoch is serving
     * @param epoch   the epoch serving afterwards
     * @param before  balancedness per sparse layer of the placement before, under the window
     * @param after   the same for the placement serving afterwards
     * @param seconds how long the attempt took (assigning included)
     * @param reason  why (trigger), and for a skip or failure what happened
     */
    public record Outcome(boolean changed, long epoch, double[] before, double[] after, double seconds, String reason) {}

    /** Told about every change (metrics). */
    @FunctionalInterface
    public interface Listener {
        void rebalanced(Outcome outcome);
    }

    private final PlacementControl control;
    private final Settings settings;
    private final Listener listener;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition wake = lock.newCondition();
    private final Object attempt = new Object();
    private final AtomicLong rebalances = new AtomicLong();
    private final AtomicLong failures = new AtomicLong();
    private volatile Outcome last;
    private long stepsAtLast;
    private Thread loop;
    private boolean closed;

    public Rebalancer(PlacementControl control, Settings settings, Listener listener) {
        this.control = Objects.requireNonNull(control, "control");
        this.settings = Objects.requireNonNull(settings, "settings");
        this.listener = listener == null ? o -> { } : listener;
    }

    /** Starts the trigger loop when a timer or threshold is set; without, only {@link #rebalanceNow} acts. */
    public Rebalancer start() {
        if (settings.automatic()) {
            loop = new Thread(this::run, "epserve-rebalancer");
            loop.setDaemon(true);
            loop.start();
        }
        return this;
    }

    private void run() {
        while (true) {
            lock.lock();
            try {
                if (closed) {
                    return;
                }
                wake.await(settings.checkMillis(), TimeUnit.MILLISECONDS);
                if (closed) {
                    return;
                }
            } catch (InterruptedException e) {
                return;
            } finally {
                lock.unlock();
            }
            String why = due();
            if (why != null) {
                attempt(why, true);
            }
        }
    }

    /** The trigger that fires now, or null. */
    String due() {
        RoutedTokens r = control.routedTokens();
        long since = r.steps() - stepsAtLast;
        if (settings.everySteps() > 0 && since >= settings.everySteps()) {
            return "every " + settings.everySteps() + " steps";
        }
        if (settings.below() > 0 && since >= Math.max(1, r.windowSteps() / 4)) {
            double min = min(control.placement().balancedness(r.window()));
            if (min < settings.below()) {
                return String.format(Locale.ROOT, "balancedness %.3f below %.3f", min, settings.below());
            }
        }
        return null;
    }

    /**
     * On demand: computes the balanced placement for the current window and moves to it unless
     * it puts the same replicas on the same workers; blocks until done. Never throws for a
     * worker's failure: the outcome says what happened.
     */
    public Outcome rebalanceNow(String reason) {
        return attempt(reason, false);
    }

    /** As {@link #rebalanceNow}; with {@code requireGain} (automatic triggers) also skipped when it gains less than {@value #MIN_GAIN}. */
    private Outcome attempt(String reason, boolean requireGain) {
        synchronized (attempt) {
            long t0 = System.nanoTime();
            RoutedTokens r = control.routedTokens();
            stepsAtLast = r.steps();
            ExpertPlacement current = control.placement();
            ExpertLoad window = r.window();
            ExpertLoad load = window.forModel(sparseOf(current), current.numExperts());
            // a membership that changes the workers knows their hosts; fixed labels are by position
            List<String> hosts = control.hostLabels(current.workers());
            if (hosts == null && settings.hosts() != null && settings.hosts().size() == current.workerCount()) {
                hosts = settings.hosts();
            }
            ExpertPlacement next = BalancedPlacement.place(load, current.workers(), hosts, settings.redundantSlots(),
                    current.epoch() + 1);
            double[] before = current.balancedness(load);
            double[] after = next.balancedness(load);
            Outcome o;
            if (next.sameReplicas(current) || (requireGain && min(after) < min(before) + MIN_GAIN)) {
                o = new Outcome(false, current.epoch(), before, before, seconds(t0), reason + ": kept epoch " + current.epoch()
                        + String.format(Locale.ROOT, " (balanced placement would give %.3f, now %.3f)", min(after), min(before)));
            } else {
                try {
                    control.updatePlacement(next);
                    rebalances.incrementAndGet();
                    o = new Outcome(true, next.epoch(), before, after, seconds(t0), reason);
                } catch (RuntimeException e) {
                    failures.incrementAndGet();
                    o = new Outcome(false, current.epoch(), before, before, seconds(t0), reason + ": change to epoch " + next.epoch()
                            + " abandoned, epoch " + current.epoch() + " serves on: " + e.getMessage());
                }
            }
            last = o;
            listener.rebalanced(o);
            return o;
        }
    }

    private static double seconds(long t0) {
        return (System.nanoTime() - t0) / 1e9;
    }

    private static double min(double[] v) {
        double m = 1;
        for (double x : v) {
            m = Math.min(m, x);
        }
        return m;
    }

    static boolean[] sparseOf(ExpertPlacement p) {
        return InProcessDispatcher.sparseOf(p);
    }

    /** Placement changes made. */
    public long rebalances() {
        return rebalances.get();
    }

    /** Attempts abandoned because a worker failed. */
    public long failures() {
        return failures.get();
    }

    /** The last attempt, or null. */
    public Outcome last() {
        return last;
    }

    public Settings settings() {
        return settings;
    }

    public PlacementControl control() {
        return control;
    }

    /** Balancedness per sparse layer of the serving placement under the current window. */
    public double[] balancedness() {
        ExpertPlacement p = control.placement();
        return p.balancedness(control.routedTokens().window());
    }

    @Override
    public void close() {
        lock.lock();
        try {
            closed = true;
            wake.signalAll();
        } finally {
            lock.unlock();
        }
        Thread t = loop;
        if (t != null) {
            try {
                t.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
