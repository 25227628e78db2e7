package io.epserve.moe;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The one count of routed tokens per (layer, expert) a frontend keeps: in total since start, and
 * over a sliding window of the last {@code windowSteps} steps, which is what a placement policy
 * balances (DESIGN.md §5). The dispatcher records every routing once; the CLI's statistics, the
 * metrics, the live view and the rebalancer all read it here.
 *
 * <p>A step is one dispatch of the first sparse layer (with two-batch overlap, each micro-batch
 * counts as one). The window is kept as {@value #BUCKETS} buckets of {@code ceil(windowSteps / }
 * {@value #BUCKETS}{@code )} steps each, so it allocates nothing per step and covers between
 * {@code windowSteps - bucket} and {@code windowSteps} steps: when a bucket is full, the oldest is
 * cleared and becomes the current one. Thread-safe (lock-free counters; a rotation racing with a
 * record may count that record in the cleared bucket, off by at most one dispatch).
 */
public final class RoutedTokens {
    /** Buckets of the sliding window. */
    public static final int BUCKETS = 16;
    /** Default window: 1,000 steps. */
    public static final int DEFAULT_WINDOW_STEPS = 1000;

    private final boolean[] sparse;
    private final int numExperts;
    private final int firstSparse;
    private final int windowSteps;
    private final int bucketSteps;
    /** [layer] -> tokens per expert since start. */
    private final AtomicLongArray[] total;
    /** [bucket] -> [layer * experts + expert]. */
    private final AtomicLongArray[] buckets;
    private final AtomicLong steps = new AtomicLong();

    public RoutedTokens(boolean[] sparseLayers, int numExperts, int windowSteps) {
        if (windowSteps < 1) {
            throw new IllegalArgumentException("the load window must be at least 1 step, got " + windowSteps);
        }
        this.sparse = sparseLayers.clone();
        this.numExperts = numExperts;
        int first = -1;
        for (int l = 0; l < sparse.length && first < 0; l++) {
            if (sparse[l]) {
                first = l;
            }
        }
        this.firstSparse = first;
        this.windowSteps = windowSteps;
        this.bucketSteps = Math.max(1, (windowSteps + BUCKETS - 1) / BUCKETS);
        this.total = new AtomicLongArray[sparse.length];
        for (int l = 0; l < sparse.length; l++) {
            total[l] = new AtomicLongArray(sparse[l] ? numExperts : 0);
        }
        this.buckets = new AtomicLongArray[BUCKETS];
        for (int b = 0; b < BUCKETS; b++) {
            buckets[b] = new AtomicLongArray(sparse.length * numExperts);
        }
    }

    /** Counts one layer's routing (real experts, before any sharding). */
    public void record(int layer, RoutingResult r) {
        if (layer < 0 || layer >= sparse.length || !sparse[layer]) {
            return;
        }
        if (layer == firstSparse) {
            long s = steps.incrementAndGet();
            if ((s - 1) % bucketSteps == 0 && s > 1) {
                // a new bucket starts: clear the oldest, which this one replaces
                AtomicLongArray b = buckets[(int) ((s - 1) / bucketSteps % BUCKETS)];
                for (int i = 0; i < b.length(); i++) {
                    b.set(i, 0);
                }
            }
        }
        AtomicLongArray t = total[layer];
        AtomicLongArray b = buckets[(int) (Math.max(0, steps.get() - 1) / bucketSteps % BUCKETS)];
        int[] ids = r.experts();
        int base = layer * numExperts;
        for (int i = 0, n = r.tokens() * r.k(); i < n; i++) {
            int e = ids[i];
            if (e >= 0 && e < numExperts) {
                t.incrementAndGet(e);
                b.incrementAndGet(base + e);
            }
        }
    }

    /**
     * Adds a saved window's counts to the current bucket (and the totals): a restarted frontend
     * resumes balancing from the load it had seen, which then ages out as new steps come.
     */
    public void seed(ExpertLoad window) {
        AtomicLongArray b = buckets[(int) (Math.max(0, steps.get() - 1) / bucketSteps % BUCKETS)];
        for (int l = 0; l < Math.min(sparse.length, window.layers()); l++) {
            if (!sparse[l] || !window.has(l) || window.numExperts() != numExperts) {
                continue;
            }
            for (int e = 0; e < numExperts; e++) {
                long n = window.tokens(l, e);
                total[l].addAndGet(e, n);
                b.addAndGet(l * numExperts + e, n);
            }
        }
    }

    /** Tokens per (layer, expert) since start. */
    public ExpertLoad total() {
        long[][] t = new long[sparse.length][];
        for (int l = 0; l < sparse.length; l++) {
            if (sparse[l]) {
                t[l] = new long[numExperts];
                for (int e = 0; e < numExperts; e++) {
                    t[l][e] = total[l].get(e);
                }
            }
        }
        return ExpertLoad.of(numExperts, t);
    }

    /** Tokens per (layer, expert) over the window (the last {@link #windowSteps()} steps, to a bucket). */
    public ExpertLoad window() {
        long[][] t = new long[sparse.length][];
        for (int l = 0; l < sparse.length; l++) {
            if (sparse[l]) {
                t[l] = new long[numExperts];
            }
        }
        for (AtomicLongArray b : buckets) {
            for (int l = 0; l < sparse.length; l++) {
                if (sparse[l]) {
                    for (int e = 0; e < numExperts; e++) {
                        t[l][e] += b.get(l * numExperts + e);
                    }
                }
            }
        }
        return ExpertLoad.of(numExperts, t);
    }

    /** Steps recorded since start. */
    public long steps() {
        return steps.get();
    }

    public int windowSteps() {
        return windowSteps;
    }

    public boolean[] sparseLayers() {
        return sparse.clone();
    }

    public int numExperts() {
        return numExperts;
    }
}
