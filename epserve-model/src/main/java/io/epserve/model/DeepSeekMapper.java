package io.epserve.model;

import io.epserve.format.CheckpointException;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.RopeStyle;

/**
 * DeepseekV2ForCausalLM and DeepseekV3ForCausalLM: MLA attention, the first
 * first_k_dense_replace layers dense (then every moe_layer_freq-th sparse), shared experts, and
 * the router of the version: V2 softmax scores, greedy or group-limited greedy (groups ranked by
 * their best expert); V3 sigmoid scores with a correction bias, groups ranked by their two best.
 */
final class DeepSeekMapper implements ArchitectureMapper {
    private final boolean v3;

    DeepSeekMapper(boolean v3) {
        this.v3 = v3;
    }

    @Override
    public Parts map(ConfigReader r, Common c) {
        int experts = r.positive("n_routed_experts");
        int moeInter = r.positive("moe_intermediate_size");
        int topK = r.positive("num_experts_per_tok");
        float scale = (float) r.optDouble("routed_scaling_factor", 1.0);
        RouterConfig router;
        if (v3) {
            String scoring = r.optText("scoring_func", "sigmoid");
            if (!scoring.equals("sigmoid")) {
                throw new CheckpointException("config.json: scoring_func '" + scoring + "' is not supported for DeepSeek-V3 (sigmoid)");
            }
            router = new RouterConfig.GroupedSigmoid(experts, topK, r.optInt("n_group", 1), r.optInt("topk_group", 1),
                    r.optBool("norm_topk_prob", true), scale);
        } else {
            String scoring = r.optText("scoring_func", "softmax");
            if (!scoring.equals("softmax")) {
                throw new CheckpointException("config.json: scoring_func '" + scoring + "' is not supported for DeepSeek-V2 (softmax)");
            }
            String method = r.optText("topk_method", "greedy");
            boolean grouped = switch (method) {
                case "greedy" -> false;
                case "group_limited_greedy" -> true;
                default -> throw new CheckpointException("config.json: topk_method '" + method
                        + "' is not supported for DeepSeek-V2 (greedy, group_limited_greedy)");
            };
            int nGroup = grouped ? r.positive("n_group") : 1;
            int topkGroup = grouped ? r.positive("topk_group") : 1;
            if (experts % nGroup != 0 || topkGroup > nGroup) {
                throw new CheckpointException("config.json: n_group " + nGroup + " must divide n_routed_experts " + experts
                        + " and be at least topk_group " + topkGroup);
            }
            router = new RouterConfig.GroupedSoftmax(experts, topK, nGroup, topkGroup, r.optBool("norm_topk_prob", false), scale);
        }
        int firstDense = r.optInt("first_k_dense_replace", 0);
        int freq = Math.max(1, r.optInt("moe_layer_freq", 1));
        boolean[] sparse = new boolean[c.layers()];
        for (int l = 0; l < c.layers(); l++) {
            sparse[l] = l >= firstDense && l % freq == 0;
        }
        int qLora = r.has("q_lora_rank") ? r.positive("q_lora_rank") : 0;
        ModelConfig.Mla dims = new ModelConfig.Mla(qLora, r.positive("kv_lora_rank"), r.positive("qk_nope_head_dim"),
                r.positive("qk_rope_head_dim"), r.positive("v_head_dim"));
        if (dims.qkRopeDim() % 2 != 0) {
            throw new CheckpointException("config.json: qk_rope_head_dim must be even");
        }
        // V2's reference rotates adjacent pairs (complex numbers); V3's follows rope_interleave
        RopeStyle style = !v3 || r.optBool("rope_interleave", true) ? RopeStyle.INTERLEAVED : RopeStyle.NEOX;
        return new Parts(new AttentionConfig.Mla(c.heads(), dims, r.optBool("attention_bias", false)),
                new FfnConfig(r.optInt("intermediate_size", 0), sparse, experts, moeInter, r.optInt("n_shared_experts", 0) * moeInter,
                        false, GatedActivation.SILU, false),
                router, style);
    }

    @Override
    public String sharedExpertName() {
        return "shared_experts";
    }
}
