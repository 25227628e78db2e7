package io.epserve.model;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.format.CheckpointException;
import io.epserve.model.ModelConfig.QkNorm;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.RopeStyle;

/**
 * GptOssForCausalLM: GQA with biases and learned attention sinks, sliding-window and full layers
 * alternating as layer_types says (sliding first when it is absent), every layer sparse with a
 * biased router whose k best logits are softmaxed, and experts with biases and the clamped
 * SwiGLU (alpha 1.702, swiglu_limit).
 */
final class GptOssMapper implements ArchitectureMapper {
    static final float ALPHA = 1.702f;

    @Override
    public Parts map(ConfigReader r, Common c) {
        int window = r.optInt("sliding_window", 0);
        int[] windows = new int[c.layers()];
        JsonNode types = r.node("layer_types");
        for (int l = 0; l < c.layers(); l++) {
            String type = types != null && types.isArray() ? types.path(l).asText("") : (l % 2 == 0 ? "sliding_attention" : "full_attention");
            windows[l] = switch (type) {
                case "sliding_attention" -> window;
                case "full_attention" -> 0;
                default -> throw new CheckpointException("config.json: layer_types[" + l + "] is '" + type
                        + "' (sliding_attention or full_attention)");
            };
        }
        int experts = r.positive("num_local_experts");
        return new Parts(new AttentionConfig.Gqa(c.heads(), c.kvHeads(), c.headDim(), r.optBool("attention_bias", true),
                        r.optBool("attention_bias", true), QkNorm.NONE, 0f, windows, true),
                new FfnConfig(0, ArchitectureMapper.allSparse(c.layers()), experts, r.positive("intermediate_size"), 0, false,
                        new GatedActivation.ClampedSwiGlu(ALPHA, (float) r.optDouble("swiglu_limit", 7.0)), true),
                new RouterConfig.TopKSoftmax(experts, r.positive("num_experts_per_tok")), RopeStyle.NEOX);
    }

    @Override
    public String routerName() {
        return "router";
    }
}
