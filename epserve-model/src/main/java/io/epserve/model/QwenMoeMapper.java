package io.epserve.model;

import io.epserve.format.CheckpointException;
import io.epserve.model.ModelConfig.QkNorm;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.RopeStyle;
import java.util.Set;

/**
 * Qwen2MoeForCausalLM and Qwen3MoeForCausalLM: sparse every decoder_sparse_step layers except
 * mlp_only_layers; Qwen2 has q/k/v biases and a gated shared expert, Qwen3 per-head q/k norms.
 */
final class QwenMoeMapper implements ArchitectureMapper {
    private final boolean qwen3;

    QwenMoeMapper(boolean qwen3) {
        this.qwen3 = qwen3;
    }

    @Override
    public Parts map(ConfigReader r, Common c) {
        int experts = r.positive("num_experts");
        int step = r.optInt("decoder_sparse_step", 1);
        Set<Integer> mlpOnly = r.intSet("mlp_only_layers");
        boolean[] sparse = new boolean[c.layers()];
        for (int l = 0; l < c.layers(); l++) {
            sparse[l] = !mlpOnly.contains(l) && step > 0 && (l + 1) % step == 0;
        }
        if (r.optBool("use_sliding_window", false)) {
            throw new CheckpointException("config.json: use_sliding_window=true is not supported yet");
        }
        boolean bias = qwen3 ? r.optBool("attention_bias", false) : true;
        int shared = qwen3 ? 0 : r.optInt("shared_expert_intermediate_size", 0);
        return new Parts(new AttentionConfig.Gqa(c.heads(), c.kvHeads(), c.headDim(), bias, false,
                        qwen3 ? QkNorm.PER_HEAD : QkNorm.NONE, 0f, ArchitectureMapper.noWindows(c.layers()), false),
                new FfnConfig(r.optInt("intermediate_size", 0), sparse, experts, r.positive("moe_intermediate_size"), shared,
                        shared > 0, GatedActivation.SILU, false),
                new RouterConfig.SoftmaxTopK(experts, r.positive("num_experts_per_tok"), r.optBool("norm_topk_prob", false)),
                RopeStyle.NEOX);
    }
}
