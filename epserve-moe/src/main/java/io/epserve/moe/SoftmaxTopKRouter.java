package io.epserve.moe;

/**
 * Softmax over all experts, then the k largest probabilities (Mixtral, Qwen2/3-MoE, OLMoE).
 * With {@code renormalize} the k weights are divided by their sum (Mixtral always;
 * Qwen and OLMoE when {@code norm_topk_prob}). Ties go to the lower expert id, as torch.topk
 * does on CPU for equal values in practice.
 */
public record SoftmaxTopKRouter(int numExperts, int k, boolean renormalize) implements Router {
    public SoftmaxTopKRouter {
        if (k < 1 || k > numExperts) {
            throw new IllegalArgumentException("top-k " + k + " must be in [1, " + numExperts + "]");
        }
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens) {
        return route(logits, tokenIds, tokens, new RoutingBuffers());
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens, RoutingBuffers into) {
        int[] experts = into.experts(tokens * k);
        float[] weights = into.weights(tokens * k);
        float[] probs = into.scratch0(numExperts);
        for (int t = 0; t < tokens; t++) {
            int base = t * numExperts;
            float max = Float.NEGATIVE_INFINITY;
            for (int e = 0; e < numExperts; e++) {
                max = Math.max(max, logits[base + e]);
            }
            float sum = 0f;
            for (int e = 0; e < numExperts; e++) {
                probs[e] = (float) Math.exp(logits[base + e] - max);
                sum += probs[e];
            }
            for (int e = 0; e < numExperts; e++) {
                probs[e] /= sum;
            }
            TopK.select(probs, 0, numExperts, k, experts, t * k);
            float chosen = 0f;
            for (int j = 0; j < k; j++) {
                weights[t * k + j] = probs[experts[t * k + j]];
                chosen += weights[t * k + j];
            }
            if (renormalize) {
                for (int j = 0; j < k; j++) {
                    weights[t * k + j] /= chosen;
                }
            }
        }
        return into.result(tokens, k);
    }
}
