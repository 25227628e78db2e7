package io.epserve.model;

/** How a sparse layer picks its experts and weighs them; one typed part of {@link ModelConfig}. */
public sealed interface RouterConfig
        permits RouterConfig.SoftmaxTopK, RouterConfig.GroupedSigmoid, RouterConfig.GroupedSoftmax, RouterConfig.TopKSoftmax {

    int experts();

    int k();

    /** Softmax over all experts, the k best, renormalised when {@code normTopk} (Mixtral, Qwen, OLMoE). */
    record SoftmaxTopK(int experts, int k, boolean normTopk) implements RouterConfig {}

    /** DeepSeek-V3's sigmoid scores with a correction bias, group-limited, scaled. */
    record GroupedSigmoid(int experts, int k, int nGroup, int topkGroup, boolean normTopk, float scale)
            implements RouterConfig {}

    /**
     * DeepSeek-V2's softmax scores, the k best among the {@code topkGroup} groups whose best
     * expert scores highest ({@code nGroup} 1: plain greedy), times {@code scale}.
     */
    record GroupedSoftmax(int experts, int k, int nGroup, int topkGroup, boolean normTopk, float scale)
            implements RouterConfig {}

    /** gpt-oss: the k largest logits (router with a bias), then a softmax over those k. */
    record TopKSoftmax(int experts, int k) implements RouterConfig {}
}
