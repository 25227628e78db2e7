package io.epserve.model;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.format.CheckpointException;
import io.epserve.tensor.RopeStyle;
import java.util.HashSet;
import java.util.Set;

/**
 * A model's shape and semantics, read once from config.json and validated (DESIGN.md §3.11).
 * One record for all architectures: the differences between them are named fields here (which
 * norm, which router, which attention), so the forward pass reads like the maths.
 */
public record ModelConfig(
        Architecture architecture,
        int vocabSize,
        int hidden,
        int layers,
        int heads,
        int kvHeads,
        int headDim,
        float rmsEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        RopeStyle ropeStyle,
        int maxPositions,
        boolean tieEmbeddings,
        // attention
        boolean qkvBias,
        QkNorm qkNorm,
        float clipQkv,
        int slidingWindow,
        Mla mla,
        // feed-forward
        int denseIntermediate,
        int numExperts,
        int topK,
        int moeIntermediate,
        boolean[] sparseLayers,
        RouterKind routerKind,
        boolean normTopkProb,
        int nGroup,
        int topkGroup,
        float routedScalingFactor,
        int sharedIntermediate,
        boolean sharedExpertGate,
        Integer bosTokenId,
        Set<Integer> eosTokenIds) {

    /** Where q/k RMSNorm applies: not at all, per head (Qwen3-MoE), over the whole projection (OLMoE). */
    public enum QkNorm { NONE, PER_HEAD, WHOLE }

    public enum RouterKind { SOFTMAX_TOPK, SIGMOID_GROUPED_TOPK }

    /** DeepSeek's multi-head latent attention dimensions; qLoraRank 0 means a plain q_proj. */
    public record Mla(int qLoraRank, int kvLoraRank, int qkNopeDim, int qkRopeDim, int vHeadDim) {
        public int qkHeadDim() {
            return qkNopeDim + qkRopeDim;
        }
    }

    public boolean isSparse(int layer) {
        return sparseLayers[layer];
    }

    public int sparseLayerCount() {
        int n = 0;
        for (boolean b : sparseLayers) {
            n += b ? 1 : 0;
        }
        return n;
    }

    /** Rotary dims per head (all of headDim, or DeepSeek's qk_rope_head_dim). */
    public int ropeDim() {
        return mla != null ? mla.qkRopeDim() : headDim;
    }

    /** Key width per head as cached. */
    public int keyHeadDim() {
        return mla != null ? mla.qkHeadDim() : headDim;
    }

    public int valueHeadDim() {
        return mla != null ? mla.vHeadDim() : headDim;
    }

    public int cachedKvHeads() {
        return mla != null ? heads : kvHeads;
    }

    public static ModelConfig from(JsonNode c) {
        Reader r = new Reader(c);
        JsonNode archs = c.get("architectures");
        String archName = archs != null && archs.isArray() && !archs.isEmpty() ? archs.get(0).asText() : null;
        Architecture arch = archName == null ? null : Architecture.fromHfName(archName);
        if (arch == null) {
            throw new CheckpointException("config.json: architecture " + (archName == null ? "(none given)" : "'" + archName + "'")
                    + " is not supported; supported: " + Architecture.supportedList());
        }
        int hidden = r.positive("hidden_size");
        int layers = r.positive("num_hidden_layers");
        int heads = r.positive("num_attention_heads");
        int kvHeads = r.optInt("num_key_value_heads", heads);
        if (kvHeads < 1 || heads % kvHeads != 0) {
            throw new CheckpointException("config.json: num_key_value_heads " + kvHeads + " must divide num_attention_heads " + heads);
        }
        int headDim = r.optInt("head_dim", hidden / heads);
        int vocab = r.positive("vocab_size");
        float eps = (float) r.optDouble("rms_norm_eps", 1e-6);
        // transformers 5 writes rope_theta and the scaling inside rope_parameters
        JsonNode ropeParams = c.get("rope_parameters");
        double theta = ropeParams != null && ropeParams.hasNonNull("rope_theta") ? ropeParams.get("rope_theta").asDouble()
                : r.optDouble("rope_theta", 10000.0);
        int maxPos = r.optInt("max_position_embeddings", 4096);
        boolean tie = r.optBool("tie_word_embeddings", false);
        RopeScaling scaling = ropeScaling(c.hasNonNull("rope_scaling") ? c.get("rope_scaling") : ropeParams);

        boolean qkvBias = false;
        QkNorm qkNorm = QkNorm.NONE;
        float clip = 0f;
        int window = 0;
        Mla mla = null;
        RopeStyle ropeStyle = RopeStyle.NEOX;
        int dense = r.optInt("intermediate_size", 0);
        int experts;
        int topK = r.positive("num_experts_per_tok");
        int moeInter;
        boolean[] sparse = new boolean[layers];
        RouterKind router = RouterKind.SOFTMAX_TOPK;
        boolean normTopk;
        int nGroup = 1;
        int topkGroup = 1;
        float scalingFactor = 1f;
        int shared = 0;
        boolean sharedGate = false;
        switch (arch) {
            case MIXTRAL -> {
                experts = r.positive("num_local_experts");
                moeInter = r.positive("intermediate_size");
                normTopk = true;
                window = r.optInt("sliding_window", 0);
                java.util.Arrays.fill(sparse, true);
            }
            case QWEN2_MOE, QWEN3_MOE -> {
                experts = r.positive("num_experts");
                moeInter = r.positive("moe_intermediate_size");
                normTopk = r.optBool("norm_topk_prob", false);
                int step = r.optInt("decoder_sparse_step", 1);
                Set<Integer> mlpOnly = r.intSet("mlp_only_layers");
                for (int l = 0; l < layers; l++) {
                    sparse[l] = !mlpOnly.contains(l) && experts > 0 && step > 0 && (l + 1) % step == 0;
                }
                if (arch == Architecture.QWEN2_MOE) {
                    qkvBias = true;
                    shared = r.optInt("shared_expert_intermediate_size", 0);
                    sharedGate = shared > 0;
                } else {
                    qkvBias = r.optBool("attention_bias", false);
                    qkNorm = QkNorm.PER_HEAD;
                }
                if (r.optBool("use_sliding_window", false)) {
                    throw new CheckpointException("config.json: use_sliding_window=true is not supported yet");
                }
            }
            case OLMOE -> {
                experts = r.positive("num_experts");
                moeInter = r.positive("intermediate_size");
                normTopk = r.optBool("norm_topk_prob", false);
                qkvBias = r.optBool("attention_bias", false);
                qkNorm = QkNorm.WHOLE;
                clip = (float) r.optDouble("clip_qkv", 0.0);
                java.util.Arrays.fill(sparse, true);
            }
            case DEEPSEEK_V3 -> {
                experts = r.positive("n_routed_experts");
                moeInter = r.positive("moe_intermediate_size");
                normTopk = r.optBool("norm_topk_prob", true);
                router = RouterKind.SIGMOID_GROUPED_TOPK;
                String scoring = r.optText("scoring_func", "sigmoid");
                if (!scoring.equals("sigmoid")) {
                    throw new CheckpointException("config.json: scoring_func '" + scoring + "' is not supported (sigmoid)");
                }
                nGroup = r.optInt("n_group", 1);
                topkGroup = r.optInt("topk_group", 1);
                scalingFactor = (float) r.optDouble("routed_scaling_factor", 1.0);
                shared = r.optInt("n_shared_experts", 0) * moeInter;
                int firstDense = r.optInt("first_k_dense_replace", 0);
                for (int l = 0; l < layers; l++) {
                    sparse[l] = l >= firstDense;
                }
                int qLora = c.hasNonNull("q_lora_rank") ? r.positive("q_lora_rank") : 0;
                mla = new Mla(qLora, r.positive("kv_lora_rank"), r.positive("qk_nope_head_dim"),
                        r.positive("qk_rope_head_dim"), r.positive("v_head_dim"));
                if (mla.qkRopeDim() % 2 != 0) {
                    throw new CheckpointException("config.json: qk_rope_head_dim must be even");
                }
                headDim = mla.qkHeadDim();
                kvHeads = heads;
                ropeStyle = r.optBool("rope_interleave", true) ? RopeStyle.INTERLEAVED : RopeStyle.NEOX;
                qkvBias = r.optBool("attention_bias", false);
            }
            default -> throw new IllegalStateException(arch.name());
        }
        if (topK > experts) {
            throw new CheckpointException("config.json: num_experts_per_tok " + topK + " exceeds the " + experts + " experts");
        }
        if (headDim % 2 != 0) {
            throw new CheckpointException("config.json: head dimension " + headDim + " must be even for RoPE");
        }
        for (int l = 0; l < layers; l++) {
            if (!sparse[l] && dense <= 0) {
                throw new CheckpointException("config.json: layer " + l + " is dense but intermediate_size is missing");
            }
        }
        Integer bos = c.hasNonNull("bos_token_id") && c.get("bos_token_id").canConvertToInt() ? c.get("bos_token_id").asInt() : null;
        Set<Integer> eos = new HashSet<>();
        JsonNode e = c.get("eos_token_id");
        if (e != null && e.isArray()) {
            e.forEach(x -> eos.add(x.asInt()));
        } else if (e != null && e.canConvertToInt()) {
            eos.add(e.asInt());
        }
        return new ModelConfig(arch, vocab, hidden, layers, heads, kvHeads, headDim, eps, theta, scaling, ropeStyle, maxPos,
                tie, qkvBias, qkNorm, clip, window, mla, dense, experts, topK, moeInter, sparse, router, normTopk,
                nGroup, topkGroup, scalingFactor, shared, sharedGate, bos, Set.copyOf(eos));
    }

    private static RopeScaling ropeScaling(JsonNode s) {
        if (s == null || s.isNull()) {
            return null;
        }
        String type = s.hasNonNull("rope_type") ? s.get("rope_type").asText() : s.path("type").asText("");
        if (type.equals("default") || (type.isEmpty() && !s.hasNonNull("factor"))) {
            return null;
        }
        if (!type.equals("yarn")) {
            throw new CheckpointException("config.json: rope_scaling type '" + type + "' is not supported (yarn)");
        }
        if (!s.hasNonNull("factor")) {
            throw new CheckpointException("config.json: rope_scaling.factor is missing");
        }
        return new RopeScaling(s.get("factor").asDouble(),
                s.path("original_max_position_embeddings").asInt(0),
                s.hasNonNull("beta_fast") ? s.get("beta_fast").asDouble() : 32,
                s.hasNonNull("beta_slow") ? s.get("beta_slow").asDouble() : 1,
                s.path("mscale").asDouble(0), s.path("mscale_all_dim").asDouble(0),
                s.hasNonNull("attention_factor") ? s.get("attention_factor").asDouble() : null,
                s.path("truncate").asBoolean(true));
    }

    /** Typed reads of config.json with errors that name the key. */
    private record Reader(JsonNode c) {
        int positive(String key) {
            JsonNode n = c.get(key);
            if (n == null || n.isNull()) {
                throw new CheckpointException("config.json: '" + key + "' is missing");
            }
            if (!n.canConvertToInt() || !n.isIntegralNumber() || n.asInt() < 1) {
                throw new CheckpointException("config.json: '" + key + "' must be a positive integer, is " + n);
            }
            return n.asInt();
        }

        int optInt(String key, int def) {
            JsonNode n = c.get(key);
            if (n == null || n.isNull()) {
                return def;
            }
            if (!n.isIntegralNumber()) {
                throw new CheckpointException("config.json: '" + key + "' must be an integer, is " + n);
            }
            return n.asInt();
        }

        double optDouble(String key, double def) {
            JsonNode n = c.get(key);
            if (n == null || n.isNull()) {
                return def;
            }
            if (!n.isNumber()) {
                throw new CheckpointException("config.json: '" + key + "' must be a number, is " + n);
            }
            return n.asDouble();
        }

        boolean optBool(String key, boolean def) {
            JsonNode n = c.get(key);
            if (n == null || n.isNull()) {
                return def;
            }
            if (!n.isBoolean()) {
                throw new CheckpointException("config.json: '" + key + "' must be true or false, is " + n);
            }
            return n.asBoolean();
        }

        String optText(String key, String def) {
            JsonNode n = c.get(key);
            return n == null || n.isNull() ? def : n.asText();
        }

        Set<Integer> intSet(String key) {
            Set<Integer> s = new HashSet<>();
            JsonNode n = c.get(key);
            if (n != null && n.isArray()) {
                n.forEach(x -> s.add(x.asInt()));
            }
            return s;
        }
    }
}
