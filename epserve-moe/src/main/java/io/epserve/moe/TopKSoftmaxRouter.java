package io.epserve.moe;

/**
 * gpt-oss's router: the k largest logits (the gate's linear layer includes its bias), then a
 * softmax over those k alone as the weights. Ties go to the lower expert id.
 */
public record TopKSoftmaxRouter(int numExperts, int k) implements Router {
    public TopKSoftmaxRouter {
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
        for (int t = 0; t < tokens; t++) {
            int base = t * numExperts;
            TopK.select(logits, base, numExperts, k, experts, t * k);
            float max = logits[base + experts[t * k]];
            float sum = 0f;
            for (int j = 0; j < k; j++) {
                float w = (float) Math.exp(logits[base + experts[t * k + j]] - max);
                weights[t * k + j] = w;
                sum += w;
            }
            for (int j = 0; j < k; j++) {
                weights[t * k + j] /= sum;
            }
        }
        return into.result(tokens, k);
    }
}
