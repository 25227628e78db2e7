package io.epserve.moe;

import java.util.List;

/**
 * Expert workers as objects in this JVM, behind the same split/combine as remote workers
 * ({@link DispatchPlan}) but with no serialization and no copies of weights. One worker holding
 * every expert is the single-process engine.
 */
public final class InProcessDispatcher implements ExpertDispatcher {
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
        DispatchPlan plan = DispatchPlan.split(layer, hidden, hiddenSize, routing, placement);
        float[][] partials = new float[workers.size()][];
        for (int i = 0; i < routing.tokens() * routing.k(); i++) {
            tokensRouted[layer].incrementAndGet(routing.experts()[i]);
        }
        for (int w = 0; w < workers.size(); w++) {
            ExpertRequest req = plan.request(w);
            if (req != null) {
                long t0 = System.nanoTime();
                partials[w] = workers.get(w).compute(req);
                computeNanos.addAndGet(w, System.nanoTime() - t0);
                calls.incrementAndGet(w);
                workerTokens.addAndGet(w, req.pairs());
            }
        }
        plan.combine(partials, out);
    }
}
