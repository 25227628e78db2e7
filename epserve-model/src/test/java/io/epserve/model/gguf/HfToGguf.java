package io.epserve.model.gguf;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.format.Checkpoint;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A Hugging Face MoE checkpoint written as llama.cpp's convert_hf_to_gguf.py writes it (same
 * metadata keys, tensor names, stacked experts, q/k rope permutation for llama), tensors kept in
 * their float type. For architectures the GGUF fixtures do not cover; optionally split into
 * {@code NAME-0000i-of-0000n.gguf} files as gguf-split does.
 */
final class HfToGguf {
    private HfToGguf() {}

    private static final Pattern LAYER = Pattern.compile("model\\.layers\\.(\\d+)\\.(.+)");
    private static final Pattern EXPERT = Pattern.compile("(?:mlp|block_sparse_moe)\\.experts\\.(\\d+)\\.(\\w+)\\.weight");
    private static final Map<String, String> PARTS = new LinkedHashMap<>();

    static {
        PARTS.put("input_layernorm.weight", "attn_norm.weight");
        PARTS.put("post_attention_layernorm.weight", "ffn_norm.weight");
        for (String[] p : new String[][] {{"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}, {"o_proj", "attn_output"},
                {"q_norm", "attn_q_norm"}, {"k_norm", "attn_k_norm"}, {"q_a_proj", "attn_q_a"}, {"q_a_layernorm", "attn_q_a_norm"},
                {"q_b_proj", "attn_q_b"}, {"kv_a_proj_with_mqa", "attn_kv_a_mqa"}, {"kv_a_layernorm", "attn_kv_a_norm"},
                {"kv_b_proj", "attn_kv_b"}}) {
            PARTS.put("self_attn." + p[0] + ".weight", p[1] + ".weight");
            PARTS.put("self_attn." + p[0] + ".bias", p[1] + ".bias");
        }
        PARTS.put("mlp.gate.weight", "ffn_gate_inp.weight");
        PARTS.put("block_sparse_moe.gate.weight", "ffn_gate_inp.weight");
        PARTS.put("mlp.gate.e_score_correction_bias", "exp_probs_b.bias");
        PARTS.put("mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight");
        for (String s : new String[] {"shared_expert", "shared_experts"}) {
            PARTS.put("mlp." + s + ".gate_proj.weight", "ffn_gate_shexp.weight");
            PARTS.put("mlp." + s + ".up_proj.weight", "ffn_up_shexp.weight");
            PARTS.put("mlp." + s + ".down_proj.weight", "ffn_down_shexp.weight");
        }
        PARTS.put("mlp.gate_proj.weight", "ffn_gate.weight");
        PARTS.put("mlp.up_proj.weight", "ffn_up.weight");
        PARTS.put("mlp.down_proj.weight", "ffn_down.weight");
    }

    /** Converts {@code hfDir} into {@code out} (a single file, or {@code splits} files named from it); returns the first file. */
    static Path convert(Path hfDir, Path out, int splits) {
        try (Checkpoint ckpt = Checkpoint.open(hfDir)) {
            JsonNode c = ckpt.config();
            String hfArch = c.get("architectures").get(0).asText();
            String arch = switch (hfArch) {
                case "MixtralForCausalLM" -> "llama";
                case "Qwen2MoeForCausalLM" -> "qwen2moe";
                case "Qwen3MoeForCausalLM" -> "qwen3moe";
                case "OlmoeForCausalLM" -> "olmoe";
                case "DeepseekV3ForCausalLM", "DeepseekV2ForCausalLM" -> "deepseek2";
                default -> throw new IllegalArgumentException(hfArch);
            };
            TestGgufWriter w = new TestGgufWriter();
            w.string("general.architecture", arch).string("general.name", hfDir.getFileName().toString());
            String a = arch + ".";
            int heads = c.get("num_attention_heads").asInt();
            int kvHeads = c.path("num_key_value_heads").asInt(heads);
            int hidden = c.get("hidden_size").asInt();
            w.u32(a + "vocab_size", c.get("vocab_size").asInt())
                    .u32(a + "context_length", c.get("max_position_embeddings").asInt())
                    .u32(a + "embedding_length", hidden)
                    .u32(a + "block_count", c.get("num_hidden_layers").asInt())
                    .u32(a + "attention.head_count", heads)
                    .u32(a + "attention.head_count_kv", kvHeads)
                    .f32(a + "rope.freq_base", c.path("rope_theta").asDouble(10000))
                    .f32(a + "attention.layer_norm_rms_epsilon", c.get("rms_norm_eps").asDouble())
                    .u32(a + "expert_used_count", c.get("num_experts_per_tok").asInt())
                    .u32(a + "feed_forward_length", c.get("intermediate_size").asInt());
            w.u32("tokenizer.ggml.bos_token_id", c.get("bos_token_id").asInt()).u32("tokenizer.ggml.eos_token_id", c.get("eos_token_id").asInt());
            switch (arch) {
                case "llama" -> w.u32(a + "expert_count", c.get("num_local_experts").asInt()).u32(a + "rope.dimension_count", hidden / heads);
                case "qwen2moe" -> w.u32(a + "expert_count", c.get("num_experts").asInt())
                        .u32(a + "expert_feed_forward_length", c.get("moe_intermediate_size").asInt())
                        .u32(a + "expert_shared_feed_forward_length", c.get("shared_expert_intermediate_size").asInt());
                case "qwen3moe" -> w.u32(a + "expert_count", c.get("num_experts").asInt())
                        .u32(a + "expert_feed_forward_length", c.get("moe_intermediate_size").asInt())
                        .u32(a + "attention.key_length", c.get("head_dim").asInt())
                        .u32(a + "attention.value_length", c.get("head_dim").asInt());
                case "olmoe" -> w.u32(a + "expert_count", c.get("num_experts").asInt());
                case "deepseek2" -> w.u32(a + "expert_count", c.get("n_routed_experts").asInt())
                        .u32(a + "leading_dense_block_count", c.get("first_k_dense_replace").asInt())
                        .u32(a + "attention.q_lora_rank", c.get("q_lora_rank").asInt())
                        .u32(a + "attention.kv_lora_rank", c.get("kv_lora_rank").asInt())
                        .u32(a + "attention.key_length", c.get("qk_nope_head_dim").asInt() + c.get("qk_rope_head_dim").asInt())
                        .u32(a + "attention.value_length", c.get("v_head_dim").asInt())
                        .u32(a + "expert_feed_forward_length", c.get("moe_intermediate_size").asInt())
                        .u32(a + "expert_shared_count", c.get("n_shared_experts").asInt())
                        .f32(a + "expert_weights_scale", c.get("routed_scaling_factor").asDouble())
                        .bool(a + "expert_weights_norm", c.get("norm_topk_prob").asBoolean())
                        .u32(a + "expert_gating_func", c.path("scoring_func").asText("softmax").equals("sigmoid") ? 2 : 1)
                        .u32(a + "expert_group_count", c.path("n_group").asInt(1))
                        .u32(a + "expert_group_used_count", c.path("topk_group").asInt(1))
                        .u32(a + "rope.dimension_count", c.get("qk_rope_head_dim").asInt());
                default -> throw new IllegalStateException(arch);
            }
            // experts: layer → projection → expert → tensor, stacked after the loop
            Map<String, Map<String, Map<Integer, Tensor>>> experts = new LinkedHashMap<>();
            for (String name : ckpt.names()) {
                Tensor t = ckpt.tensor(name);
                switch (name) {
                    case "model.embed_tokens.weight" -> add(w, "token_embd.weight", t, bytes(t));
                    case "model.norm.weight" -> add(w, "output_norm.weight", t, bytes(t));
                    case "lm_head.weight" -> add(w, "output.weight", t, bytes(t));
                    default -> {
                        Matcher m = LAYER.matcher(name);
                        if (!m.matches()) {
                            throw new IllegalArgumentException(name);
                        }
                        String blk = "blk." + m.group(1) + ".";
                        Matcher e = EXPERT.matcher(m.group(2));
                        if (e.matches()) {
                            String proj = switch (e.group(2)) {
                                case "w1", "gate_proj" -> "ffn_gate_exps";
                                case "w3", "up_proj" -> "ffn_up_exps";
                                case "w2", "down_proj" -> "ffn_down_exps";
                                default -> throw new IllegalArgumentException(name);
                            };
                            experts.computeIfAbsent(blk, k -> new LinkedHashMap<>()).computeIfAbsent(proj, k -> new LinkedHashMap<>())
                                    .put(Integer.parseInt(e.group(1)), t);
                            continue;
                        }
                        String part = PARTS.get(m.group(2));
                        if (part == null) {
                            throw new IllegalArgumentException("no GGUF name for " + name);
                        }
                        byte[] data = bytes(t);
                        if (arch.equals("llama") && (part.equals("attn_q.weight") || part.equals("attn_k.weight"))) {
                            data = permute(t, data, part.equals("attn_q.weight") ? heads : kvHeads);
                        }
                        add(w, blk + part, t, data);
                    }
                }
            }
            for (Map.Entry<String, Map<String, Map<Integer, Tensor>>> layer : experts.entrySet()) {
                for (Map.Entry<String, Map<Integer, Tensor>> proj : layer.getValue().entrySet()) {
                    int n = proj.getValue().size();
                    Tensor first = proj.getValue().get(0);
                    byte[] all = new byte[Math.toIntExact(first.data().byteSize() * n)];
                    for (int e = 0; e < n; e++) {
                        byte[] b = bytes(proj.getValue().get(e));
                        System.arraycopy(b, 0, all, e * b.length, b.length);
                    }
                    w.tensor(layer.getKey() + proj.getKey() + ".weight", ggmlType(first), new long[] {first.dim(1), first.dim(0), n}, all);
                }
            }
            return write(w, out, splits);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** gguf-split: the first file keeps the metadata, every file says which part it is. */
    private static Path write(TestGgufWriter all, Path out, int splits) throws IOException {
        if (splits <= 1) {
            all.write(out);
            return out;
        }
        String base = out.getFileName().toString().replaceFirst("\\.gguf$", "");
        List<TestGgufWriter.TensorData> ts = all.tensors();
        Path first = null;
        for (int s = 0; s < splits; s++) {
            TestGgufWriter part = s == 0 ? new TestGgufWriter().copyMetadataFrom(all) : new TestGgufWriter();
            int from = ts.size() * s / splits;
            int to = ts.size() * (s + 1) / splits;
            part.u16("split.no", s).u16("split.count", splits).i32("split.tensors.count", ts.size());
            for (TestGgufWriter.TensorData t : ts.subList(from, to)) {
                part.tensor(t.name(), t.type(), t.ne(), t.data());
            }
            Path p = out.resolveSibling(String.format("%s-%05d-of-%05d.gguf", base, s + 1, splits));
            part.write(p);
            if (first == null) {
                first = p;
            }
        }
        return first;
    }

    private static void add(TestGgufWriter w, String name, Tensor t, byte[] data) {
        long[] ne = new long[t.rank()];
        for (int i = 0; i < ne.length; i++) {
            ne[i] = t.dim(ne.length - 1 - i);
        }
        w.tensor(name, ggmlType(t), ne, data);
    }

    private static int ggmlType(Tensor t) {
        return switch (t.dtype()) {
            case F32 -> 0;
            case F16 -> 1;
            case BF16 -> 30;
            default -> throw new IllegalArgumentException(t.dtype().toString());
        };
    }

    private static byte[] bytes(Tensor t) {
        return t.data().toArray(ValueLayout.JAVA_BYTE);
    }

    /** convert_hf_to_gguf's LlamaModel.permute: w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2). */
    private static byte[] permute(Tensor t, byte[] data, int heads) {
        int rows = t.rows();
        int rowBytes = data.length / rows;
        int d = rows / heads;
        byte[] out = new byte[data.length];
        for (int h = 0; h < heads; h++) {
            for (int j = 0; j < 2; j++) {
                for (int i = 0; i < d / 2; i++) {
                    int src = h * d + j * (d / 2) + i;
                    int dst = h * d + 2 * i + j;
                    System.arraycopy(data, src * rowBytes, out, dst * rowBytes, rowBytes);
                }
            }
        }
        return out;
    }
}
