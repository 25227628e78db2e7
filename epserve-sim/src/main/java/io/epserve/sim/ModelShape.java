package io.epserve.sim;

import io.epserve.model.ModelConfig;
import io.epserve.model.plan.PlanModel;
import io.epserve.model.plan.WeightFormat;

/**
 * What the simulator needs to know about a model: per layer, the parameters the frontend
 * multiplies (attention, router, shared expert or dense MLP) and, for sparse layers, the routed
 * experts' shape; the output head once per step. Built from config.json alone, as the planner does.
 *
 * @param name             where the shape came from (a path or a model name)
 * @param sparse           which layers have routed experts
 * @param frontendParams   per layer, parameters the frontend multiplies per token
 * @param headParams       parameters multiplied once per token per step after the last layer (lm_head)
 * @param hidden           hidden size: the width of what crosses the wire per token
 * @param experts          routed experts per sparse layer
 * @param topK             experts per token
 * @param paramsPerExpert  3 × hidden × moe intermediate
 * @param expertFormat     how the routed experts are stored
 * @param frontendFormat   how everything else is stored
 * @param nonExpertBytes   bytes of every parameter outside the routed experts (what a frontend maps)
 */
public record ModelShape(String name, boolean[] sparse, long[] frontendParams, long headParams, int hidden, int experts, int topK,
                         long paramsPerExpert, WeightFormat expertFormat, WeightFormat frontendFormat, long nonExpertBytes) {

    public ModelShape {
        if (sparse.length != frontendParams.length || sparse.length == 0) {
            throw new IllegalArgumentException("a model shape needs one frontend parameter count per layer");
        }
        if (experts < 1 || topK < 1 || topK > experts || hidden < 1 || paramsPerExpert < 1) {
            throw new IllegalArgumentException("model shape " + name + ": experts " + experts + ", top-k " + topK + ", hidden " + hidden
                    + ", params per expert " + paramsPerExpert + " are not a valid MoE");
        }
        sparse = sparse.clone();
        frontendParams = frontendParams.clone();
    }

    /** The shape of a model as the planner reads it, experts stored as {@code expertFormat}. */
    public static ModelShape of(PlanModel m, WeightFormat expertFormat) {
        ModelConfig c = m.config();
        var p = m.params();
        int layers = c.layers();
        int sparseLayers = c.sparseLayerCount();
        long attentionPerLayer = p.attention() / layers;
        long[] frontend = new long[layers];
        for (int l = 0; l < layers; l++) {
            frontend[l] = attentionPerLayer + (c.isSparse(l)
                    ? (p.routers() + p.sharedExperts()) / sparseLayers
                    : 3L * c.hidden() * c.denseIntermediate());
        }
        long head = p.lmHead() > 0 ? p.lmHead() : p.embedding();
        WeightFormat stored = WeightFormat.BF16;
        return new ModelShape(m.source(), c.sparseLayers(), frontend, head, c.hidden(), c.numExperts(), c.topK(), p.paramsPerExpert(),
                expertFormat, stored, bytes(p.nonExpert(), stored));
    }

    /** Bytes of {@code params} weights stored as {@code f} (whole blocks assumed, as the planner checks). */
    static long bytes(long params, WeightFormat f) {
        return Math.round(params * f.bitsPerWeight() / 8);
    }

    public int layers() {
        return sparse.length;
    }

    public boolean isSparse(int layer) {
        return sparse[layer];
    }

    public int sparseLayerCount() {
        int n = 0;
        for (boolean s : sparse) {
            n += s ? 1 : 0;
        }
        return n;
    }

    public long frontendParams(int layer) {
        return frontendParams[layer];
    }

    /** Bytes of one routed expert's weights. */
    public long expertBytes() {
        return bytes(paramsPerExpert, expertFormat);
    }

    /** Bytes of all routed experts of all sparse layers. */
    public long allExpertBytes() {
        return expertBytes() * experts * sparseLayerCount();
    }

    /** Bytes of a full replica: what one data-parallel process maps. */
    public long fullModelBytes() {
        return nonExpertBytes + allExpertBytes();
    }
}
