package io.epserve.moe;

import java.util.Arrays;

/**
 * DeepSeek-V2's router: softmax over all experts; with {@code nGroup} > 1 ("group_limited_greedy")
 * the experts are split into groups, each scored by its best expert, and only the
 * {@code topkGroup} best groups stay eligible; then the k best scores. The weights are those
 * softmax scores (divided by their sum when {@code normalize}) times {@code scalingFactor}.
 * {@code nGroup} 1 is V2-Lite's plain "greedy". (DeepSeek-V2 paper §2.2; HF DeepseekV2TopkRouter.)
 */
public record GroupedSoftmaxRouter(int numExperts, int k, int nGroup, int topkGroup, boolean normalize, float scalingFactor)
        implements Router {
    public GroupedSoftmaxRouter {
        if (nGroup < 1 || numExperts % nGroup != 0) {
            throw new IllegalArgumentException("n_group " + nGroup + " must divide the " + numExperts + " experts");
        }
        if (topkGroup < 1 || topkGroup > nGroup) {
            throw new IllegalArgumentException("topk_group " + topkGroup + " must be in [1, n_group=" + nGroup + "]");
        }
        if (k < 1 || k > topkGroup * (numExperts / nGroup)) {
            throw new IllegalArgumentException("top-k " + k + " exceeds the experts of topk_group groups");
        }
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens) {
        return route(logits, tokenIds, tokens, new RoutingBuffers());
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens, RoutingBuffers into) {
        int perGroup = numExperts / nGroup;
        int[] experts = into.experts(tokens * k);
        float[] weights = into.weights(tokens * k);
        float[] probs = into.scratch0(numExperts);
        float[] choice = into.scratch1(numExperts);
        float[] groupScore = into.scratch2(nGroup);
        int[] groups = into.intScratch(topkGroup);
        boolean[] keep = into.flags(nGroup);
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
                choice[e] = probs[e];
            }
            if (nGroup > 1) {
                for (int g = 0; g < nGroup; g++) {
                    float best = Float.NEGATIVE_INFINITY;
                    for (int e = g * perGroup; e < (g + 1) * perGroup; e++) {
                        best = Math.max(best, probs[e]);
                    }
                    groupScore[g] = best;
                }
                TopK.select(groupScore, 0, nGroup, topkGroup, groups, 0);
                Arrays.fill(keep, 0, nGroup, false);
                for (int j = 0; j < topkGroup; j++) {
                    keep[groups[j]] = true;
                }
                for (int e = 0; e < numExperts; e++) {
                    if (!keep[e / perGroup]) {
                        choice[e] = Float.NEGATIVE_INFINITY;
                    }
                }
            }
            TopK.select(choice, 0, numExperts, k, experts, t * k);
            float chosen = 0f;
            for (int j = 0; j < k; j++) {
                weights[t * k + j] = probs[experts[t * k + j]];
                chosen += weights[t * k + j];
            }
            float denom = normalize ? chosen + 1e-20f : 1f;
            for (int j = 0; j < k; j++) {
                weights[t * k + j] = weights[t * k + j] / denom * scalingFactor;
            }
        }
        return into.result(tokens, k);
    }
}
