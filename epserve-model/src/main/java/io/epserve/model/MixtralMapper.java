package io.epserve.model;

import io.epserve.model.ModelConfig.QkNorm;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.RopeStyle;
import java.util.Arrays;

/** MixtralForCausalLM: GQA (optionally one sliding window for every layer), every layer sparse, softmax top-k renormalised. */
final class MixtralMapper implements ArchitectureMapper {
    @Override
    public Parts map(ConfigReader r, Common c) {
        int[] windows = new int[c.layers()];
        Arrays.fill(windows, r.optInt("sliding_window", 0));
        int experts = r.positive("num_local_experts");
        return new Parts(new AttentionConfig.Gqa(c.heads(), c.kvHeads(), c.headDim(), false, false, QkNorm.NONE, 0f, windows, false),
                new FfnConfig(r.optInt("intermediate_size", 0), ArchitectureMapper.allSparse(c.layers()), experts,
                        r.positive("intermediate_size"), 0, false, GatedActivation.SILU, false),
                new RouterConfig.SoftmaxTopK(experts, r.positive("num_experts_per_tok"), true), RopeStyle.NEOX);
    }
}
