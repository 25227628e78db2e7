package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;

/**
 * Every weight of a model resolved by name and checked for shape, once, at load; the routed
 * experts through {@link CheckpointExperts}.
 */
public final class ModelWeights implements ExpertStore {
    private final ModelConfig cfg;
    private final Checkpoint ckpt;
    private final Tensor embed;
    private final Tensor finalNorm;
    private final Tensor lmHead;
    private final List<LayerWeights> layers;
    private final CheckpointExperts experts;
    /** Where {@link #expert} reads routed experts: the checkpoint's, or a converted copy (quantized experts). */
    private final ExpertStore routed;

    private ModelWeights(ModelConfig cfg, Checkpoint ckpt) {
        this.cfg = cfg;
        this.ckpt = ckpt;
        int h = cfg.hidden();
        embed = ckpt.tensor("model.embed_tokens.weight", cfg.vocabSize(), h);
        finalNorm = ckpt.tensor("model.norm.weight", h);
        if (ckpt.has("lm_head.weight")) {
            lmHead = ckpt.tensor("lm_head.weight", cfg.vocabSize(), h);
        } else if (cfg.tieEmbeddings()) {
            lmHead = embed;
        } else {
            throw new CheckpointException(ckpt.fileOf("model.embed_tokens.weight")
                    + ": missing tensor 'lm_head.weight' (and tie_word_embeddings is false)");
        }
        layers = new ArrayList<>();
        experts = new CheckpointExperts(cfg, ckpt);
        for (int l = 0; l < cfg.layers(); l++) {
            layers.add(loadLayer(l));
        }
        routed = experts;
    }

    private ModelWeights(ModelWeights base, ExpertStore routed) {
        this.cfg = base.cfg;
        this.ckpt = base.ckpt;
        this.embed = base.embed;
        this.finalNorm = base.finalNorm;
        this.lmHead = base.lmHead;
        this.layers = base.layers;
        this.experts = base.experts;
        this.routed = routed;
    }

    /**
     * The same weights with the routed experts served by {@code routed} (e.g. quantized copies,
     * {@link io.epserve.model.quant.QuantizedExperts}); everything else, shared experts included,
     * stays as stored.
     */
    public ModelWeights withRoutedExperts(ExpertStore routed) {
        return new ModelWeights(this, routed);
    }

    /** Resolves and shape-checks all non-expert weights; experts are resolved on first use. */
    public static ModelWeights load(ModelConfig cfg, Checkpoint ckpt) {
        return new ModelWeights(cfg, ckpt);
    }

    private LayerWeights loadLayer(int l) {
        String p = "model.layers." + l + ".";
        int h = cfg.hidden();
        Tensor inNorm = ckpt.tensor(p + "input_layernorm.weight", h);
        Tensor postNorm = ckpt.tensor(p + "post_attention_layernorm.weight", h);
        LayerWeights.Attention attn = cfg.mla() != null ? loadMla(p + "self_attn.") : loadGqa(p + "self_attn.");
        LayerWeights.Ffn ffn;
        if (cfg.isSparse(l)) {
            String prefix = CheckpointExperts.moePrefix(ckpt, l);
            String router = prefix + "." + cfg.architecture().mapper().routerName();
            Tensor gate = ckpt.tensor(router + ".weight", cfg.numExperts(), h);
            float[] gateBias = ckpt.has(router + ".bias") ? ckpt.tensor(router + ".bias", cfg.numExperts()).toFloatArray() : null;
            float[] bias = null;
            if (cfg.router() instanceof RouterConfig.GroupedSigmoid && ckpt.has(prefix + ".gate.e_score_correction_bias")) {
                bias = ckpt.tensor(prefix + ".gate.e_score_correction_bias", cfg.numExperts()).toFloatArray();
            }
            ExpertWeights shared = null;
            Tensor sharedGate = null;
            if (cfg.sharedIntermediate() > 0) {
                String sp = prefix + "." + cfg.architecture().mapper().sharedExpertName() + ".";
                shared = swiglu(sp, cfg.sharedIntermediate());
                if (cfg.sharedExpertGate()) {
                    sharedGate = ckpt.tensor(prefix + ".shared_expert_gate.weight", 1, h);
                }
            }
            ffn = new LayerWeights.Moe(gate, bias, shared, sharedGate, gateBias);
        } else {
            ffn = new LayerWeights.Dense(swiglu(p + "mlp.", cfg.denseIntermediate()));
        }
        return new LayerWeights(inNorm, attn, postNorm, ffn);
    }

    private LayerWeights.Gqa loadGqa(String p) {
        int h = cfg.hidden();
        int qDim = cfg.heads() * cfg.headDim();
        int kvDim = cfg.kvHeads() * cfg.headDim();
        Tensor q = ckpt.tensor(p + "q_proj.weight", qDim, h);
        Tensor k = ckpt.tensor(p + "k_proj.weight", kvDim, h);
        Tensor v = ckpt.tensor(p + "v_proj.weight", kvDim, h);
        Tensor o = ckpt.tensor(p + "o_proj.weight", h, qDim);
        float[] qb = null;
        float[] kb = null;
        float[] vb = null;
        if (cfg.qkvBias()) {
            qb = ckpt.tensor(p + "q_proj.bias", qDim).toFloatArray();
            kb = ckpt.tensor(p + "k_proj.bias", kvDim).toFloatArray();
            vb = ckpt.tensor(p + "v_proj.bias", kvDim).toFloatArray();
        }
        Tensor qn = null;
        Tensor kn = null;
        switch (cfg.qkNorm()) {
            case PER_HEAD -> {
                qn = ckpt.tensor(p + "q_norm.weight", cfg.headDim());
                kn = ckpt.tensor(p + "k_norm.weight", cfg.headDim());
            }
            case WHOLE -> {
                qn = ckpt.tensor(p + "q_norm.weight", qDim);
                kn = ckpt.tensor(p + "k_norm.weight", kvDim);
            }
            case NONE -> { }
        }
        AttentionConfig.Gqa g = (AttentionConfig.Gqa) cfg.attention();
        float[] ob = g.oBias() ? ckpt.tensor(p + "o_proj.bias", h).toFloatArray() : null;
        float[] sinks = g.sinks() ? ckpt.tensor(p + "sinks", cfg.heads()).toFloatArray() : null;
        return new LayerWeights.Gqa(q, k, v, o, qb, kb, vb, qn, kn, ob, sinks);
    }

    private LayerWeights.Mla loadMla(String p) {
        ModelConfig.Mla m = cfg.mla();
        int h = cfg.hidden();
        int qOut = cfg.heads() * m.qkHeadDim();
        Tensor qA = null;
        Tensor qANorm = null;
        Tensor qB = null;
        Tensor q = null;
        if (m.qLoraRank() > 0) {
            qA = ckpt.tensor(p + "q_a_proj.weight", m.qLoraRank(), h);
            qANorm = ckpt.tensor(p + "q_a_layernorm.weight", m.qLoraRank());
            qB = ckpt.tensor(p + "q_b_proj.weight", qOut, m.qLoraRank());
        } else {
            q = ckpt.tensor(p + "q_proj.weight", qOut, h);
        }
        Tensor kvA = ckpt.tensor(p + "kv_a_proj_with_mqa.weight", m.kvLoraRank() + m.qkRopeDim(), h);
        Tensor kvANorm = ckpt.tensor(p + "kv_a_layernorm.weight", m.kvLoraRank());
        Tensor kvB = ckpt.tensor(p + "kv_b_proj.weight", (long) cfg.heads() * (m.qkNopeDim() + m.vHeadDim()), m.kvLoraRank());
        Tensor o = ckpt.tensor(p + "o_proj.weight", h, (long) cfg.heads() * m.vHeadDim());
        return new LayerWeights.Mla(qA, qANorm, qB, q, kvA, kvANorm, kvB, o);
    }

    private ExpertWeights swiglu(String p, int inter) {
        int h = cfg.hidden();
        return new ExpertWeights(ckpt.tensor(p + "gate_proj.weight", inter, h), ckpt.tensor(p + "up_proj.weight", inter, h),
                ckpt.tensor(p + "down_proj.weight", h, inter));
    }

    @Override
    public ExpertWeights expert(int layer, int e) {
        return routed.expert(layer, e);
    }

    /** The routed experts as stored in the checkpoint, resolved on demand (see {@link #expert} for the ones computed on). */
    public CheckpointExperts experts() {
        return experts;
    }

    /** Resolves every routed expert now, so a missing or misshapen expert fails the load, not a request. */
    public void resolveAllExperts() {
        for (int l = 0; l < cfg.layers(); l++) {
            if (cfg.isSparse(l)) {
                for (int e = 0; e < cfg.numExperts(); e++) {
                    expert(l, e);
                }
            }
        }
    }

    public ModelConfig config() {
        return cfg;
    }

    public Checkpoint checkpoint() {
        return ckpt;
    }

    public Tensor embed() {
        return embed;
    }

    public Tensor finalNorm() {
        return finalNorm;
    }

    public Tensor lmHead() {
        return lmHead;
    }

    public LayerWeights layer(int l) {
        return layers.get(l);
    }
}
