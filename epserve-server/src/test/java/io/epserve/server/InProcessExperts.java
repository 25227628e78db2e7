package io.epserve.server;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;

/**
 * A transformer of its own (own activation buffers) over a loaded model's weights, with the
 * routed experts on {@code workers} in-process workers (contiguous placement), as `epserve serve`
 * runs them: one per engine, since the tests' engines share one mapped model.
 */
record InProcessExperts(ExpertPlacement placement, InProcessDispatcher dispatcher, MoeTransformer transformer) {
    static InProcessExperts create(LoadedModel model, int workers, MoeTransformer.RouterChoice router) {
        InProcessDispatcher d = InProcessDispatcher.of(model.weights(), model.config().sparseLayers(), model.config().numExperts(),
                workers, ExpertPlacement.Policy.CONTIGUOUS);
        return new InProcessExperts(d.placement(), d, new MoeTransformer(model.weights(), d, router));
    }
}
