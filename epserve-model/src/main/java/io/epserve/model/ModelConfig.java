package io.epserve.model;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.format.CheckpointException;
import io.epserve.moe.GatedActivation;
import io.epserve.moe.MoeShape;
import io.epserve.tensor.RopeStyle;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/**
 * A model's shape and semantics, read once from config.json and validated (DESIGN.md §3.11): the
 * fields every architecture shares, and three typed parts an {@link ArchitectureMapper} builds
 * from the architecture's own fields: {@link AttentionConfig} (GQA or MLA), {@link FfnConfig}
 * (dense and sparse layers, experts) and {@link RouterConfig}. The flat accessors
 * ({@link #heads()}, {@link #numExperts()}, ...) read through to the parts.
 */
public record ModelConfig(
        Architecture architecture,
        int vocabSize,
        int hidden,
        int layers,
        float rmsEps,
        double ropeTheta,
        RopeScaling ropeScaling,
        RopeStyle ropeStyle,
        int maxPositions,
        boolean tieEmbeddings,
        AttentionConfig attention,
        FfnConfig ffn,
        RouterConfig router,
        Integer bosTokenId,
        Set<Integer> eosTokenIds) {

    /** Where q/k RMSNorm applies: not at all, per head (Qwen3-MoE), over the whole projection (OLMoE). */
    public enum QkNorm { NONE, PER_HEAD, WHOLE }

    /** The router families, as {@link RouterConfig}'s variants. */
    public enum RouterKind { SOFTMAX_TOPK, SIGMOID_GROUPED_TOPK, SOFTMAX_GROUPED_TOPK, TOPK_SOFTMAX }

    /** DeepSeek's multi-head latent attention dimensions; qLoraRank 0 means a plain q_proj. */
    public record Mla(int qLoraRank, int kvLoraRank, int qkNopeDim, int qkRopeDim, int vHeadDim) {
        public int qkHeadDim() {
            return qkNopeDim + qkRopeDim;
        }
    }

    public ModelConfig {
        if (ffn.sparseLayers().length != layers) {
            throw new IllegalArgumentException("sparse-layer flags for " + ffn.sparseLayers().length + " layers, model has " + layers);
        }
        if (attention instanceof AttentionConfig.Gqa g && g.layerWindows().length != layers) {
            throw new IllegalArgumentException("attention windows for " + g.layerWindows().length + " layers, model has " + layers);
        }
        eosTokenIds = Set.copyOf(eosTokenIds);
    }

    /** The flat form this record had before its typed parts; kept so that callers building one directly still compile. */
    public ModelConfig(Architecture architecture, int vocabSize, int hidden, int layers, int heads, int kvHeads, int headDim,
                       float rmsEps, double ropeTheta, RopeScaling ropeScaling, RopeStyle ropeStyle, int maxPositions,
                       boolean tieEmbeddings, boolean qkvBias, QkNorm qkNorm, float clipQkv, int slidingWindow, Mla mla,
                       int denseIntermediate, int numExperts, int topK, int moeIntermediate, boolean[] sparseLayers,
                       RouterKind routerKind, boolean normTopkProb, int nGroup, int topkGroup, float routedScalingFactor,
                       int sharedIntermediate, boolean sharedExpertGate, Integer bosTokenId, Set<Integer> eosTokenIds) {
        this(architecture, vocabSize, hidden, layers, rmsEps, ropeTheta, ropeScaling, ropeStyle, maxPositions, tieEmbeddings,
                mla != null ? new AttentionConfig.Mla(heads, mla, qkvBias)
                        : new AttentionConfig.Gqa(heads, kvHeads, headDim, qkvBias, false, qkNorm, clipQkv, windows(layers, slidingWindow), false),
                new FfnConfig(denseIntermediate, sparseLayers, numExperts, moeIntermediate, sharedIntermediate, sharedExpertGate,
                        GatedActivation.SILU, false),
                switch (routerKind) {
                    case SOFTMAX_TOPK -> new RouterConfig.SoftmaxTopK(numExperts, topK, normTopkProb);
                    case SIGMOID_GROUPED_TOPK -> new RouterConfig.GroupedSigmoid(numExperts, topK, nGroup, topkGroup, normTopkProb,
                            routedScalingFactor);
                    case SOFTMAX_GROUPED_TOPK -> new RouterConfig.GroupedSoftmax(numExperts, topK, nGroup, topkGroup, normTopkProb,
                            routedScalingFactor);
                    case TOPK_SOFTMAX -> new RouterConfig.TopKSoftmax(numExperts, topK);
                },
                bosTokenId, eosTokenIds);
    }

    private static int[] windows(int layers, int window) {
        int[] w = new int[layers];
        Arrays.fill(w, window);
        return w;
    }

    // ---- read-through accessors of the typed parts

    public int heads() {
        return attention.heads();
    }

    /** Key/value heads of the checkpoint's projections (MLA: one per query head, as expanded). */
    public int kvHeads() {
        return attention instanceof AttentionConfig.Gqa g ? g.kvHeads() : attention.heads();
    }

    public int headDim() {
        return attention.keyHeadDim();
    }

    public boolean qkvBias() {
        return switch (attention) {
            case AttentionConfig.Gqa g -> g.qkvBias();
            case AttentionConfig.Mla m -> m.bias();
        };
    }

    public QkNorm qkNorm() {
        return attention instanceof AttentionConfig.Gqa g ? g.qkNorm() : QkNorm.NONE;
    }

    public float clipQkv() {
        return attention instanceof AttentionConfig.Gqa g ? g.clipQkv() : 0f;
    }

    /** The widest sliding window of any layer; 0 when every layer attends to the whole sequence. */
    public int slidingWindow() {
        return attention instanceof AttentionConfig.Gqa g ? g.maxWindow() : 0;
    }

    /** {@code layer}'s sliding window; 0 for full attention. */
    public int window(int layer) {
        return attention.window(layer);
    }

    public Mla mla() {
        return attention instanceof AttentionConfig.Mla m ? m.dims() : null;
    }

    public int denseIntermediate() {
        return ffn.denseIntermediate();
    }

    public int numExperts() {
        return ffn.experts();
    }

    public int topK() {
        return router.k();
    }

    public int moeIntermediate() {
        return ffn.moeIntermediate();
    }

    public boolean[] sparseLayers() {
        return ffn.sparseLayers();
    }

    public RouterKind routerKind() {
        return switch (router) {
            case RouterConfig.SoftmaxTopK s -> RouterKind.SOFTMAX_TOPK;
            case RouterConfig.GroupedSigmoid s -> RouterKind.SIGMOID_GROUPED_TOPK;
            case RouterConfig.GroupedSoftmax s -> RouterKind.SOFTMAX_GROUPED_TOPK;
            case RouterConfig.TopKSoftmax s -> RouterKind.TOPK_SOFTMAX;
        };
    }

    public boolean normTopkProb() {
        return switch (router) {
            case RouterConfig.SoftmaxTopK s -> s.normTopk();
            case RouterConfig.GroupedSigmoid s -> s.normTopk();
            case RouterConfig.GroupedSoftmax s -> s.normTopk();
            case RouterConfig.TopKSoftmax s -> true;
        };
    }

    public int nGroup() {
        return switch (router) {
            case RouterConfig.GroupedSigmoid s -> s.nGroup();
            case RouterConfig.GroupedSoftmax s -> s.nGroup();
            default -> 1;
        };
    }

    public int topkGroup() {
        return switch (router) {
            case RouterConfig.GroupedSigmoid s -> s.topkGroup();
            case RouterConfig.GroupedSoftmax s -> s.topkGroup();
            default -> 1;
        };
    }

    public float routedScalingFactor() {
        return switch (router) {
            case RouterConfig.GroupedSigmoid s -> s.scale();
            case RouterConfig.GroupedSoftmax s -> s.scale();
            default -> 1f;
        };
    }

    public int sharedIntermediate() {
        return ffn.sharedIntermediate();
    }

    public boolean sharedExpertGate() {
        return ffn.sharedExpertGate();
    }

    public boolean isSparse(int layer) {
        return ffn.isSparse(layer);
    }

    /** The expert layers alone: what a remote dispatcher and its workers need to know of this model. */
    public MoeShape moeShape() {
        return new MoeShape(sparseLayers(), numExperts(), hidden, moeIntermediate());
    }

    public int sparseLayerCount() {
        int n = 0;
        for (boolean b : ffn.sparseLayers()) {
            n += b ? 1 : 0;
        }
        return n;
    }

    /** Rotary dims per head (all of headDim, or DeepSeek's qk_rope_head_dim). */
    public int ropeDim() {
        return attention.ropeDim();
    }

    /** Key width per head as the uncompressed cache stores it. */
    public int keyHeadDim() {
        return attention.keyHeadDim();
    }

    public int valueHeadDim() {
        return attention.valueHeadDim();
    }

    public int cachedKvHeads() {
        return attention.cachedKvHeads();
    }

    public static ModelConfig from(JsonNode c) {
        ConfigReader r = new ConfigReader(c);
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

        ArchitectureMapper.Parts parts = arch.mapper().map(r, new ArchitectureMapper.Common(hidden, layers, heads, kvHeads, headDim));
        int experts = parts.ffn().experts();
        int topK = parts.router().k();
        if (topK > experts) {
            throw new CheckpointException("config.json: num_experts_per_tok " + topK + " exceeds the " + experts + " experts");
        }
        if (parts.attention().keyHeadDim() % 2 != 0) {
            throw new CheckpointException("config.json: head dimension " + parts.attention().keyHeadDim() + " must be even for RoPE");
        }
        for (int l = 0; l < layers; l++) {
            if (!parts.ffn().isSparse(l) && parts.ffn().denseIntermediate() <= 0) {
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
        return new ModelConfig(arch, vocab, hidden, layers, eps, theta, scaling, parts.ropeStyle(), maxPos, tie,
                parts.attention(), parts.ffn(), parts.router(), bos, eos);
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
}
