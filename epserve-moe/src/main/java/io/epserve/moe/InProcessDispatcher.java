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

    public InProcessDispatcher(ExpertPlacement placement, List<ExpertWorker> workers) {
        if (workers.size() != placement.workerCount()) {
            throw new IllegalArgumentException(workers.size() + " workers for a placement of " + placement.workerCount());
        }
        this.placement = placement;
        this.workers = List.copyOf(workers);
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
        for (int w = 0; w < workers.size(); w++) {
            ExpertRequest req = plan.request(w);
            if (req != null) {
                partials[w] = workers.get(w).compute(req);
            }
        }
        plan.combine(partials, out);
    }
}
