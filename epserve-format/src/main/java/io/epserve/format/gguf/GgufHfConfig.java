package io.epserve.format.gguf;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.CheckpointException;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A GGUF file's model metadata as the {@code config.json} Hugging Face would write for the same
 * model, so that the one config reader (and its validation) serves both formats. Keys follow
 * llama.cpp's {@code gguf-py/gguf/constants.py} ({@code {arch}.embedding_length}, ...), and the
 * architectures are llama.cpp's names for our models:
 * <pre>
 *   llama (with expert_count &gt; 0) → MixtralForCausalLM     qwen2moe → Qwen2MoeForCausalLM
 *   qwen3moe → Qwen3MoeForCausalLM                           olmoe    → OlmoeForCausalLM
 *   deepseek2, sigmoid gating (expert_gating_func 2) → DeepseekV3ForCausalLM, else DeepseekV2ForCausalLM
 * </pre>
 * Where llama.cpp fixes a behaviour in code rather than in metadata (Qwen3-MoE renormalises its
 * top-k weights, Qwen2-MoE and OLMoE do not), the value llama.cpp uses is written.
 */
public final class GgufHfConfig {
    private GgufHfConfig() {}

    /** llama.cpp's architecture names epserve reads. */
    public static final List<String> ARCHITECTURES = List.of("llama", "qwen2moe", "qwen3moe", "olmoe", "deepseek2");

    /** The HF config of the model in {@code m}; {@code tensors} is the merged directory of all its files. */
    public static ObjectNode from(GgufMetadata m, Map<String, GgufFile.TensorInfo> tensors) {
        String arch = m.requireString("general.architecture");
        if (!ARCHITECTURES.contains(arch)) {
            throw new CheckpointException(m.file() + ": GGUF architecture '" + arch + "' is not supported; supported: "
                    + String.join(", ", ARCHITECTURES));
        }
        Keys k = new Keys(m, arch);
        ObjectNode c = JsonNodeFactory.instance.objectNode();
        c.put("epserve_source", "gguf");
        c.put("hidden_size", k.req("embedding_length"));
        c.put("num_hidden_layers", k.req("block_count"));
        int heads = k.req("attention.head_count");
        c.put("num_attention_heads", heads);
        c.put("num_key_value_heads", k.perLayerConstant("attention.head_count_kv").orElse(heads));
        c.put("rms_norm_eps", k.dbl("attention.layer_norm_rms_epsilon").orElse(1e-6));
        c.put("rope_theta", k.dbl("rope.freq_base").orElse(10000.0));
        c.put("max_position_embeddings", k.opt("context_length").orElse(4096));
        c.put("vocab_size", vocabSize(m, k, tensors));
        c.put("tie_word_embeddings", !tensors.containsKey("output.weight"));
        int experts = k.opt("expert_count").orElse(0);
        c.put("num_experts_per_tok", k.req("expert_used_count"));
        m.optLong("tokenizer.ggml.bos_token_id").ifPresent(v -> c.put("bos_token_id", v));
        m.optLong("tokenizer.ggml.eos_token_id").ifPresent(v -> c.put("eos_token_id", v));
        ropeScaling(k).ifPresent(s -> c.set("rope_scaling", s));
        String hf;
        switch (arch) {
            case "llama" -> {
                if (experts < 1) {
                    throw new CheckpointException(m.file() + ": metadata key 'llama.expert_count' is missing or 0: a dense llama "
                            + "model is not a mixture of experts, and epserve serves MoE models (Mixtral is arch llama with experts)");
                }
                hf = "MixtralForCausalLM";
                c.put("num_local_experts", experts);
                c.put("intermediate_size", k.req("feed_forward_length"));
                requireFullRope(m, k, c.get("hidden_size").asInt() / heads);
            }
            case "qwen2moe", "qwen3moe" -> {
                hf = arch.equals("qwen2moe") ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM";
                c.put("num_experts", k.req("expert_count"));
                c.put("moe_intermediate_size", k.req("expert_feed_forward_length"));
                k.opt("feed_forward_length").ifPresent(v -> c.put("intermediate_size", v));
                k.opt("expert_shared_feed_forward_length").ifPresent(v -> c.put("shared_expert_intermediate_size", v));
                k.opt("attention.key_length").ifPresent(v -> c.put("head_dim", v));
                // llama.cpp's build_moe_ffn: qwen3moe normalises the chosen weights, qwen2moe does not.
                c.put("norm_topk_prob", arch.equals("qwen3moe"));
                if (arch.equals("qwen3moe")) {
                    c.put("attention_bias", tensors.containsKey("blk.0.attn_q.bias"));
                }
            }
            case "olmoe" -> {
                hf = "OlmoeForCausalLM";
                c.put("num_experts", k.req("expert_count"));
                c.put("intermediate_size", k.opt("expert_feed_forward_length").orElseGet(() -> k.req("feed_forward_length")));
                c.put("norm_topk_prob", false);
                c.put("attention_bias", tensors.containsKey("blk.0.attn_q.bias"));
            }
            case "deepseek2" -> {
                long gating = k.opt("expert_gating_func").orElse(1);
                hf = gating == 2 ? "DeepseekV3ForCausalLM" : "DeepseekV2ForCausalLM";
                c.put("scoring_func", gating == 2 ? "sigmoid" : "softmax");
                c.put("n_routed_experts", k.req("expert_count"));
                c.put("moe_intermediate_size", k.req("expert_feed_forward_length"));
                c.put("intermediate_size", k.req("feed_forward_length"));
                c.put("first_k_dense_replace", k.opt("leading_dense_block_count").orElse(0));
                c.put("n_shared_experts", k.opt("expert_shared_count").orElse(0));
                c.put("routed_scaling_factor", k.dbl("expert_weights_scale").orElse(1.0));
                c.put("norm_topk_prob", k.bool("expert_weights_norm").orElse(false));
                c.put("n_group", k.opt("expert_group_count").orElse(1));
                c.put("topk_group", k.opt("expert_group_used_count").orElse(1));
                int q = k.opt("attention.q_lora_rank").orElse(0);
                if (q > 0) {
                    c.put("q_lora_rank", q);
                } else {
                    c.putNull("q_lora_rank");
                }
                c.put("kv_lora_rank", k.req("attention.kv_lora_rank"));
                int rope = k.req("rope.dimension_count");
                // Files written for llama.cpp's absorbed MLA keep the per-head sizes under *_mla.
                int key = k.opt("attention.key_length_mla").orElseGet(() -> k.req("attention.key_length"));
                int value = k.opt("attention.value_length_mla").orElseGet(() -> k.req("attention.value_length"));
                if (key <= rope) {
                    throw new CheckpointException(m.file() + ": metadata key '" + arch + ".attention.key_length' (" + key
                            + ") must exceed '" + arch + ".rope.dimension_count' (" + rope + ")");
                }
                c.put("qk_rope_head_dim", rope);
                c.put("qk_nope_head_dim", key - rope);
                c.put("v_head_dim", value);
                c.put("rope_interleave", true);
            }
            default -> throw new IllegalStateException(arch);
        }
        ArrayNode archs = c.putArray("architectures");
        archs.add(hf);
        return c;
    }

    private static int vocabSize(GgufMetadata m, Keys k, Map<String, GgufFile.TensorInfo> tensors) {
        Optional<Integer> v = k.opt("vocab_size");
        if (v.isPresent()) {
            return v.get();
        }
        GgufFile.TensorInfo embd = tensors.get("token_embd.weight");
        if (embd != null && embd.ne().length == 2) {
            return Math.toIntExact(embd.ne()[1]);
        }
        return m.requireArray("tokenizer.ggml.tokens", GgufMetadata.ValueType.STRING).size();
    }

    /** epserve rotates whole heads; a llama file that rotates fewer dims is refused, naming the key. */
    private static void requireFullRope(GgufMetadata m, Keys k, int headDim) {
        Optional<Integer> dims = k.opt("rope.dimension_count");
        if (dims.isPresent() && dims.get() != headDim) {
            throw new CheckpointException(m.file() + ": metadata key '" + k.arch + ".rope.dimension_count' is " + dims.get()
                    + " but the head dimension is " + headDim + " (partial rotary embedding is not supported)");
        }
    }

    private static Optional<ObjectNode> ropeScaling(Keys k) {
        Optional<String> type = k.m.optString(k.arch + ".rope.scaling.type");
        if (type.isEmpty() || type.get().equals("none")) {
            return Optional.empty();
        }
        ObjectNode s = JsonNodeFactory.instance.objectNode();
        s.put("type", type.get());
        s.put("rope_type", type.get());
        k.dbl("rope.scaling.factor").ifPresent(f -> s.put("factor", f));
        k.opt("rope.scaling.original_context_length").ifPresent(v -> s.put("original_max_position_embeddings", v));
        // convert_hf_to_gguf writes yarn_log_multiplier = 0.1 · mscale_all_dim (DeepSeek), with mscale = mscale_all_dim.
        k.dbl("rope.scaling.yarn_log_multiplier").ifPresent(mul -> {
            s.put("mscale", mul / 0.1);
            s.put("mscale_all_dim", mul / 0.1);
        });
        return Optional.of(s);
    }

    /** Reads of {@code {arch}.key} with errors that name the full key. */
    private record Keys(GgufMetadata m, String arch) {
        int req(String key) {
            return m.requireInt(arch + "." + key, 1);
        }

        Optional<Integer> opt(String key) {
            return m.has(arch + "." + key) ? Optional.of(m.requireInt(arch + "." + key, 0)) : Optional.empty();
        }

        Optional<Double> dbl(String key) {
            return m.optDouble(arch + "." + key);
        }

        Optional<Boolean> bool(String key) {
            return m.optBool(arch + "." + key);
        }

        /** A key that may be a per-layer array (llama.cpp allows it); epserve needs one value for all layers. */
        Optional<Integer> perLayerConstant(String key) {
            String full = arch + "." + key;
            if (m.type(full) == GgufMetadata.ValueType.ARRAY) {
                GgufMetadata.Array a = m.requireArray(full, GgufMetadata.ValueType.UINT32, GgufMetadata.ValueType.INT32);
                if (a.size() == 0 || a.items().stream().distinct().count() != 1) {
                    throw new CheckpointException(m.file() + ": metadata key '" + full + "' differs between layers " + a.items()
                            + " (not supported)");
                }
                return Optional.of(((Long) a.items().getFirst()).intValue());
            }
            return opt(key);
        }
    }
}
