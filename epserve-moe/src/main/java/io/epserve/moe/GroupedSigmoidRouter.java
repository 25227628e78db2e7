package io.epserve.moe;

import java.util.Arrays;

/**
 * DeepSeek-V3's router ("noaux_tc"): sigmoid scores; a per-expert correction bias is added for
 * the <em>choice</em> only; experts are split into {@code nGroup} groups, each group scored by the
 * sum of its two best biased scores, only the best {@code topkGroup} groups stay eligible
 * (the others' experts are excluded: -inf, as DeepSeek-V3's inference/model.py and HF
 * transformers 5 mask them; HF 4.52 filled 0, which lets a dropped group's expert beat a kept one
 * whose biased score is negative), and the k best biased scores among them are chosen. The
 * weights are the unbiased sigmoid scores of the chosen experts, divided by their sum when
 * {@code normalize}, times {@code scalingFactor}.
 * (DeepSeek-V3 technical report §2.1.2; HF DeepseekV3TopkRouter.)
 */
public record GroupedSigmoidRouter(int numExperts, int k, int nGroup, int topkGroup, float[] correctionBias,
                                   boolean normalize, float scalingFactor) implements Router {
    public GroupedSigmoidRouter {
        if (nGroup < 1 || numExperts % nGroup != 0) {
            throw new IllegalArgumentException("n_group " + nGroup + " must divide the " + numExperts + " experts");
        }
        if (topkGroup < 1 || topkGroup > nGroup) {
            throw new IllegalArgumentException("topk_group " + topkGroup + " must be in [1, n_group=" + nGroup + "]");
        }
        if (k < 1 || k > topkGroup * (numExperts / nGroup)) {
            throw new IllegalArgumentException("top-k " + k + " exceeds the experts of topk_group groups");
        }
        if (correctionBias != null && correctionBias.length != numExperts) {
            throw new IllegalArgumentException("e_score_correction_bias has " + correctionBias.length + " values for "
                    + numExperts + " experts");
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
        float[] scores = into.scratch0(numExperts);
        float[] choice = into.scratch1(numExperts);
        float[] groupScore = into.scratch2(nGroup);
        int[] groups = into.intScratch(topkGroup);
        boolean[] keep = into.flags(nGroup);
        for (int t = 0; t < tokens; t++) {
            for (int e = 0; e < numExperts; e++) {
                float s = (float) (1.0 / (1.0 + Math.exp(-logits[t * numExperts + e])));
                scores[e] = s;
                choice[e] = s + (correctionBias == null ? 0f : correctionBias[e]);
            }
            for (int g = 0; g < nGroup; g++) {
                float best = Float.NEGATIVE_INFINITY;
                float second = Float.NEGATIVE_INFINITY;
                for (int e = g * perGroup; e < (g + 1) * perGroup; e++) {
                    float v = choice[e];
                    if (v > best) {
                        second = best;
                        best = v;
                    } else if (v > second) {
                        second = v;
                    }
                }
                groupScore[g] = perGroup == 1 ? best : best + second;
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
            TopK.select(choice, 0, numExperts, k, experts, t * k);
            float sum = 0f;
            for (int j = 0; j < k; j++) {
                float w = scores[experts[t * k + j]];
                weights[t * k + j] = w;
                sum += w;
            }
            float denom = normalize ? sum + 1e-20f : 1f;
            for (int j = 0; j < k; j++) {
                weights[t * k + j] = weights[t * k + j] / denom * scalingFactor;
            }
        }
        return into.result(tokens, k);
    }
}
