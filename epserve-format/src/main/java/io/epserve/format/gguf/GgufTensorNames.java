package io.epserve.format.gguf;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * llama.cpp's tensor names ({@code gguf-py/gguf/tensor_mapping.py}) mapped to the Hugging Face
 * names the model loader reads, for the architectures of {@link GgufHfConfig}:
 * <pre>
 *   token_embd.weight            model.embed_tokens.weight
 *   output_norm.weight           model.norm.weight
 *   output.weight                lm_head.weight
 *   blk.L.attn_norm / ffn_norm   model.layers.L.input_layernorm / post_attention_layernorm
 *   blk.L.attn_q|k|v|output      ...self_attn.q_proj|k_proj|v_proj|o_proj  (.weight, .bias)
 *   blk.L.attn_q_norm|k_norm     ...self_attn.q_norm|k_norm
 *   blk.L.attn_q_a|q_a_norm|q_b|kv_a_mqa|kv_a_norm|kv_b  (DeepSeek MLA: q_a_proj, q_a_layernorm, ...)
 *   blk.L.ffn_gate_inp           {moe}.gate.weight  (the router)
 *   blk.L.exp_probs_b.bias       {moe}.gate.e_score_correction_bias
 *   blk.L.ffn_gate|up|down_exps  [E, rows, cols] stacked → {moe}.experts.E.{w1|w3|w2 or gate|up|down_proj}.weight, one view per expert
 *   blk.L.ffn_gate.E.weight      (older per-expert Mixtral files) → the same per-expert names
 *   blk.L.ffn_*_shexp            {moe}.shared_expert(s).*_proj;  ffn_gate_inp_shexp → {moe}.shared_expert_gate [1, H]
 *   blk.L.ffn_gate|up|down       dense layers: model.layers.L.mlp.*_proj
 * </pre>
 * with {moe} = model.layers.L.block_sparse_moe for {@code llama} (Mixtral) and
 * model.layers.L.mlp otherwise. ggml's {@code ne} is the HF shape reversed, so nothing is
 * transposed. Tensors with no HF counterpart (e.g. {@code rope_freqs}) are not exposed.
 *
 * <p>For {@code llama}, llama.cpp's converter permutes the rows of q and k within each head so
 * that RoPE rotates adjacent pairs ({@code w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2)}); the
 * targets of attn_q / attn_k carry the head count to undo that ({@link Target#unpermuteHeads}).
 * The other architectures are written unpermuted.
 */
public final class GgufTensorNames {
    private GgufTensorNames() {}

    /**
     * One HF tensor made from a GGUF tensor: the whole of it, or expert {@code expert} of a stacked
     * one; {@code unpermuteHeads} &gt; 0 undoes llama.cpp's q/k permutation over that many heads;
     * {@code shape} is the HF shape.
     */
    public record Target(String hfName, int expert, int unpermuteHeads, long[] shape) {}

    private static final Pattern BLOCK = Pattern.compile("blk\\.(\\d+)\\.([a-z_]+?)(?:\\.(\\d+))?\\.(weight|bias)");

    private static final Map<String, String> ATTENTION = Map.ofEntries(
            Map.entry("attn_q", "q_proj"), Map.entry("attn_k", "k_proj"), Map.entry("attn_v", "v_proj"),
            Map.entry("attn_output", "o_proj"), Map.entry("attn_q_norm", "q_norm"), Map.entry("attn_k_norm", "k_norm"),
            Map.entry("attn_q_a", "q_a_proj"), Map.entry("attn_q_a_norm", "q_a_layernorm"), Map.entry("attn_q_b", "q_b_proj"),
            Map.entry("attn_kv_a_mqa", "kv_a_proj_with_mqa"), Map.entry("attn_kv_a_norm", "kv_a_layernorm"),
            Map.entry("attn_kv_b", "kv_b_proj"));

    /** The HF tensors {@code t} becomes (none when it has no counterpart). */
    public static List<Target> targets(String arch, GgufFile.TensorInfo t, int heads, int kvHeads) {
        long[] shape = t.shape();
        switch (t.name()) {
            case "token_embd.weight" -> {
                return List.of(new Target("model.embed_tokens.weight", -1, 0, shape));
            }
            case "output_norm.weight" -> {
                return List.of(new Target("model.norm.weight", -1, 0, shape));
            }
            case "output.weight" -> {
                return List.of(new Target("lm_head.weight", -1, 0, shape));
            }
            default -> { }
        }
        Matcher m = BLOCK.matcher(t.name());
        if (!m.matches()) {
            return List.of();
        }
        String layer = "model.layers." + m.group(1) + ".";
        String part = m.group(2);
        String perExpert = m.group(3);
        String suffix = "." + m.group(4);
        boolean mixtral = arch.equals("llama");
        String moe = layer + (mixtral ? "block_sparse_moe" : "mlp");
        if (perExpert != null) {
            String proj = expertProj(part, mixtral);
            return proj == null ? List.of() : List.of(new Target(moe + ".experts." + perExpert + "." + proj + suffix, -1, 0, shape));
        }
        String attn = ATTENTION.get(part);
        if (attn != null) {
            int unpermute = 0;
            if (mixtral && suffix.equals(".weight")) {
                unpermute = part.equals("attn_q") ? heads : part.equals("attn_k") ? kvHeads : 0;
            }
            return List.of(new Target(layer + "self_attn." + attn + suffix, -1, unpermute, shape));
        }
        String shared = arch.equals("deepseek2") ? ".shared_experts." : ".shared_expert.";
        return switch (part) {
            case "attn_norm" -> List.of(new Target(layer + "input_layernorm" + suffix, -1, 0, shape));
            case "ffn_norm" -> List.of(new Target(layer + "post_attention_layernorm" + suffix, -1, 0, shape));
            case "ffn_gate_inp" -> List.of(new Target(moe + ".gate" + suffix, -1, 0, shape));
            case "exp_probs_b" -> List.of(new Target(moe + ".gate.e_score_correction_bias", -1, 0, shape));
            case "ffn_gate_inp_shexp" -> List.of(new Target(moe + ".shared_expert_gate" + suffix, -1, 0,
                    shape.length == 1 ? new long[] {1, shape[0]} : shape));
            case "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp" ->
                    List.of(new Target(moe + shared + part.substring(4, part.indexOf('_', 4)) + "_proj" + suffix, -1, 0, shape));
            case "ffn_gate", "ffn_up", "ffn_down" -> List.of(new Target(layer + "mlp." + part.substring(4) + "_proj" + suffix, -1, 0, shape));
            case "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps" -> {
                if (shape.length != 3) {
                    yield List.of();
                }
                String proj = expertProj(part.substring(0, part.length() - 5), mixtral);
                long[] one = {shape[1], shape[2]};
                List<Target> out = new ArrayList<>();
                for (int e = 0; e < shape[0]; e++) {
                    out.add(new Target(moe + ".experts." + e + "." + proj + suffix, e, 0, one));
                }
                yield out;
            }
            default -> List.of();
        };
    }

    /** ffn_gate / ffn_up / ffn_down of an expert: Mixtral's w1 / w3 / w2, else gate_proj / up_proj / down_proj. */
    private static String expertProj(String part, boolean mixtral) {
        return switch (part) {
            case "ffn_gate" -> mixtral ? "w1" : "gate_proj";
            case "ffn_up" -> mixtral ? "w3" : "up_proj";
            case "ffn_down" -> mixtral ? "w2" : "down_proj";
            default -> null;
        };
    }
}
