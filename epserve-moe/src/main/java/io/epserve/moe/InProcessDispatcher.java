package io.epserve.moe;

import java.util.List;

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
public final class InProcessDispatcher implements ExpertDispatcher {
    /** The answer of every successful {@link #dispatchAsync}: the work is done when it returns. */
    private static final java.util.concurrent.CompletableFuture<Void> DONE =
            java.util.concurrent.CompletableFuture.completedFuture(null);

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

    private final java.util.concurrent.atomic.AtomicReference<Buffers> spare = new java.util.concurrent.atomic.AtomicReference<>();
    private final ExpertPlacement placement;
    private final List<ExpertWorker> workers;
    private final java.util.concurrent.atomic.AtomicLongArray calls;
    private final java.util.concurrent.atomic.AtomicLongArray computeNanos;
    private final java.util.concurrent.atomic.AtomicLongArray workerTokens;
    private final java.util.concurrent.atomic.AtomicLongArray[] tokensRouted;

    public InProcessDispatcher(ExpertPlacement placement, List<ExpertWorker> workers) {
        if (workers.size() != placement.workerCount()) {
            throw new IllegalArgumentException(workers.size() + " workers for a placement of " + placement.workerCount());
        }
        this.placement = placement;
        this.workers = List.copyOf(workers);
        this.calls = new java.util.concurrent.atomic.AtomicLongArray(workers.size());
        this.computeNanos = new java.util.concurrent.atomic.AtomicLongArray(workers.size());
        this.workerTokens = new java.util.concurrent.atomic.AtomicLongArray(workers.size());
        this.tokensRouted = new java.util.concurrent.atomic.AtomicLongArray[placement.layers()];
        for (int l = 0; l < placement.layers(); l++) {
            tokensRouted[l] = new java.util.concurrent.atomic.AtomicLongArray(placement.isSparse(l) ? placement.numExperts() : 0);
        }
    }

    /**
     * {@code n} in-process workers over one store under a policy (each holds its placement's share
     * of the experts; the weights themselves are shared views, never copied).
     */
    public static InProcessDispatcher of(ExpertStore store, boolean[] sparseLayers, int numExperts, int n,
                                         ExpertPlacement.Policy policy) {
        List<String> names = java.util.stream.IntStream.range(0, n).mapToObj(i -> "inproc-" + i).toList();
        ExpertPlacement p = ExpertPlacement.create(sparseLayers, numExperts, names, policy, 0);
        return new InProcessDispatcher(p, names.stream().map(nm -> new ExpertWorker(nm, store, numExperts)).toList());
    }

    /** Per worker: calls, compute time, (token, expert) pairs; per layer and expert: tokens routed. */
    public List<String> describeStats() {
        List<String> lines = new java.util.ArrayList<>();
        for (int w = 0; w < workers.size(); w++) {
            lines.add(String.format(java.util.Locale.ROOT, "  worker %s (in-process): %d calls, %d token-expert pairs, compute %.1f ms",
                    workers.get(w).name(), calls.get(w), workerTokens.get(w), computeNanos.get(w) / 1e6));
        }
        for (int l = 0; l < tokensRouted.length; l++) {
            if (tokensRouted[l].length() == 0) {
                continue;
            }
            StringBuilder sb = new StringBuilder("  layer ").append(l).append(" tokens per expert:");
            for (int e = 0; e < tokensRouted[l].length(); e++) {
                sb.append(' ').append(tokensRouted[l].get(e));
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

    public ExpertPlacement placement() {
        return placement;
    }

    @Override
    public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
        Buffers b = spare.getAndSet(null);
        if (b == null) {
            b = new Buffers(workers.size());
        }
        DispatchPlan plan = b.plan.refill(layer, hidden, hiddenSize, routing, placement, true); // exact partials
        long[][] partials = b.partials;
        java.util.concurrent.atomic.AtomicLongArray routed = tokensRouted[layer];
        int[] chosen = routing.experts();
        for (int i = 0, n = routing.tokens() * routing.k(); i < n; i++) {
            routed.incrementAndGet(chosen[i]);
        }
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
    public java.util.concurrent.CompletableFuture<Void> dispatchAsync(int layer, float[] hidden, int hiddenSize,
                                                                     RoutingResult routing, float[] out) {
        try {
            dispatch(layer, hidden, hiddenSize, routing, out);
            return DONE;
        } catch (RuntimeException e) {
            return java.util.concurrent.CompletableFuture.failedFuture(e);
        }
    }
}
