package io.epserve.model;

import io.epserve.model.ModelConfig.QkNorm;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.RopeStyle;

/** OlmoeForCausalLM: q/k RMSNorm over the whole projection, optional clip_qkv, every layer sparse. */
final class OlmoeMapper implements ArchitectureMapper {
    @Override
    public Parts map(ConfigReader r, Common c) {
        int experts = r.positive("num_experts");
        return new Parts(new AttentionConfig.Gqa(c.heads(), c.kvHeads(), c.headDim(), r.optBool("attention_bias", false), false,
                        QkNorm.WHOLE, (float) r.optDouble("clip_qkv", 0.0), ArchitectureMapper.noWindows(c.layers()), false),
                new FfnConfig(r.optInt("intermediate_size", 0), ArchitectureMapper.allSparse(c.layers()), experts,
                        r.positive("intermediate_size"), 0, false, GatedActivation.SILU, false),
                new RouterConfig.SoftmaxTopK(experts, r.positive("num_experts_per_tok"), r.optBool("norm_topk_prob", false)),
                RopeStyle.NEOX);
    }
}
