package io.epserve.moe;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.IntStream;

/**
 * Expert workers as objects in this JVM, behind the same split/combine as remote workers
 * ({@link DispatchPlan}) but with no serialization and no copies of weights. One worker holding
 * every expert is the single-process engine.
 *
 * <p>Steady-state dispatch allocates nothing (DESIGN.md §3.4): the plan, the workers' scratch and
 * their partial sums live in a {@link Buffers} object that is taken for the call and put back
 * after it. Thread-safe: a call that finds the buffers taken by a concurrent call makes its own.
 * Dispatch runs synchronously, so {@link #dispatchAsync} returns an already completed future.
 */
public final class InProcessDispatcher implements ExpertDispatcher, PlacementControl {
    /** The answer of every successful {@link #dispatchAsync}: the work is done when it returns. */
    private static final CompletableFuture<Void> DONE =
            CompletableFuture.completedFuture(null);

    /** What one dispatch works in: a reusable plan, worker scratch and one partial-sum buffer per worker. */
    private static final class Buffers {
        final DispatchPlan plan;
        final ExpertWorker.Scratch scratch = new ExpertWorker.Scratch();
        final long[][] partials;

        Buffers(int workers) {
            plan = DispatchPlan.reusable(workers);
            partials = new long[workers][];
            for (int w = 0; w < workers; w++) {
                partials[w] = new long[0];
            }
        }
    }

    private final AtomicReference<Buffers> spare = new AtomicReference<>();
    private volatile ExpertPlacement placement;
    private final List<ExpertWorker> workers;
    private final RoutedTokens routed;
    private final AtomicLongArray calls;
    private final AtomicLongArray computeNanos;
    private final AtomicLongArray workerTokens;

    public InProcessDispatcher(ExpertPlacement placement, List<ExpertWorker> workers) {
        this(placement, workers, new RoutedTokens(sparseOf(placement), placement.numExperts(), RoutedTokens.DEFAULT_WINDOW_STEPS));
    }

    static boolean[] sparseOf(ExpertPlacement p) {
        boolean[] s = new boolean[p.layers()];
        for (int l = 0; l < s.length; l++) {
            s[l] = p.isSparse(l);
        }
        return s;
    }

    /** With the frontend's one count of routed tokens (it records every routing this dispatcher sees). */
    public InProcessDispatcher(ExpertPlacement placement, List<ExpertWorker> workers, RoutedTokens routed) {
        if (workers.size() != placement.workerCount()) {
            throw new IllegalArgumentException(workers.size() + " workers for a placement of " + placement.workerCount());
        }
        this.placement = placement;
        this.workers = List.copyOf(workers);
        this.calls = new AtomicLongArray(workers.size());
        this.computeNanos = new AtomicLongArray(workers.size());
        this.workerTokens = new AtomicLongArray(workers.size());
        this.routed = routed;
    }

    /**
     * {@code n} in-process workers over one store under a policy (each holds its placement's share
     * of the experts; the weights themselves are shared views, never copied).
     */
    public static InProcessDispatcher of(ExpertStore store, boolean[] sparseLayers, int numExperts, int n,
                                         ExpertPlacement.Policy policy) {
        List<String> names = IntStream.range(0, n).mapToObj(i -> "inproc-" + i).toList();
        ExpertPlacement p = ExpertPlacement.create(sparseLayers, numExperts, names, policy, 0);
        return new InProcessDispatcher(p, names.stream().map(nm -> new ExpertWorker(nm, store, numExperts)).toList());
    }

    /** Per worker: calls, compute time, (token, expert) pairs; per layer and expert: tokens routed. */
    public List<String> describeStats() {
        List<String> lines = new ArrayList<>();
        for (int w = 0; w < workers.size(); w++) {
            lines.add(String.format(Locale.ROOT, "  worker %s (in-process): %d calls, %d token-expert pairs, compute %.1f ms",
                    workers.get(w).name(), calls.get(w), workerTokens.get(w), computeNanos.get(w) / 1e6));
        }
        lines.addAll(describeRouted(routed.total()));
        return lines;
    }

    /** One line per sparse layer with its tokens per expert. */
    public static List<String> describeRouted(ExpertLoad load) {
        List<String> lines = new ArrayList<>();
        for (int l = 0; l < load.layers(); l++) {
            if (!load.has(l)) {
                continue;
            }
            StringBuilder sb = new StringBuilder("  layer ").append(l).append(" tokens per expert:");
            for (long n : load.layer(l)) {
                sb.append(' ').append(n);
            }
            lines.add(sb.toString());
        }
        return lines;
    }

    /** One worker holding all experts of the store. */
    public static InProcessDispatcher single(ExpertStore store, boolean[] sparseLayers, int numExperts) {
        ExpertPlacement p = ExpertPlacement.create(sparseLayers, numExperts, List.of("inproc-0"), ExpertPlacement.Policy.CONTIGUOUS, 0);
        return new InProcessDispatcher(p, List.of(new ExpertWorker("inproc-0", store, numExperts)));
    }

    @Override
    public ExpertPlacement placement() {
        return placement;
    }

    @Override
    public RoutedTokens routedTokens() {
        return routed;
    }

    /**
     * In-process workers see the whole store, so a new placement only changes which worker
     * computes what: it takes effect at the next dispatch. Same worker count; the epoch must grow.
     */
    @Override
    public void updatePlacement(ExpertPlacement next) {
        ExpertPlacement current = placement;
        if (next.workerCount() != workers.size()) {
            throw new IllegalArgumentException("a placement of " + next.workerCount() + " workers for " + workers.size()
                    + " in-process workers");
        }
        if (next.epoch() <= current.epoch()) {
            throw new IllegalArgumentException("new placement epoch " + next.epoch() + " must exceed " + current.epoch());
        }
        if (next.layers() != current.layers() || next.numExperts() != current.numExperts()) {
            throw new IllegalArgumentException("new placement is for another model shape");
        }
        placement = next;
    }

    @Override
    public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        Buffers b = spare.getAndSet(null);
        if (b == null) {
            b = new Buffers(workers.size());
        }
        DispatchPlan plan = b.plan.refill(layer, hidden, hiddenSize, routing, placement, true); // exact partials
        long[][] partials = b.partials;
        routed.record(layer, routing);
        for (int w = 0; w < partials.length; w++) {
            int n = plan.tokens(w);
            if (n > 0) {
                if (partials[w].length < n * hiddenSize) {
                    partials[w] = new long[n * hiddenSize];
                }
                long t0 = System.nanoTime();
                workers.get(w).computeExact(plan, w, partials[w], b.scratch);
                computeNanos.addAndGet(w, System.nanoTime() - t0);
                calls.incrementAndGet(w);
                workerTokens.addAndGet(w, plan.offsets(w)[n]);
            }
        }
        plan.combineExact(partials, out);
        spare.set(b);
    }

    /** Runs the dispatch now; the future it returns is already complete (shared, never to be completed again). */
    @Override
    public CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize,
                                                                     RoutingResult routing, float[] out) {
        try {
            dispatch(layer, hidden, hiddenSize, routing, out);
            return DONE;
        } catch (RuntimeException e) {
            return CompletableFuture.failedFuture(e);
        }
    }
}
