package io.epserve.model.plan;

import io.epserve.model.AttentionConfig;
import io.epserve.model.ModelConfig;
import io.epserve.model.RouterConfig;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The parameters of a model, counted from its config alone, per component: every tensor the
 * engine loads, by the shapes {@code ModelWeights} checks. A pure function of {@link ModelConfig}.
 *
 * <pre>
 *   embedding       vocab × hidden                         (model.embed_tokens)
 *   lm_head         vocab × hidden, 0 when tied            (lm_head)
 *   attention       per layer: q, k, v, o projections, q/k/v biases, q/k norms;
 *                   MLA: q_a (+ norm), q_b or q, kv_a_with_mqa (+ norm), kv_b, o
 *   norms           per layer input + post-attention RMSNorm, plus the final norm
 *   dense_mlp       per dense layer gate/up/down: 3 × hidden × intermediate
 *   routers         per sparse layer experts × hidden (+ DeepSeek's e_score_correction_bias)
 *   shared_experts  per sparse layer 3 × hidden × shared intermediate (+ Qwen2's shared_expert_gate)
 *   routed_experts  per sparse layer experts × 3 × hidden × moe intermediate
 * </pre>
 *
 * <p><b>Active</b> parameters per token count every component fully except the routed experts, of
 * which top-k per sparse layer: the convention of Mistral (Mixtral-8x7B "12.9B active") and Qwen.
 * DeepSeek's convention leaves out the input embedding, which a token only looks up
 * ({@link #activeComputeParams()}; DeepSeek-V3 "36.6B activated, including 0.9B for the output head").
 *
 * <p><b>Multi-token prediction.</b> DeepSeek-V3's checkpoint carries {@code num_nextn_predict_layers}
 * MTP modules (its layer 61) that the engine does not load. They are not in {@link #total()} (so
 * DeepSeek-V3 counts 671B, DeepSeek's own "main model" figure) but in {@link #mtpParams()}: per
 * module enorm + hnorm + eh_proj (2·hidden → hidden) + one full MoE decoder layer + the shared head's
 * norm; its embedding and output head are the main model's (the checkpoint stores copies of them,
 * which is how Hugging Face arrives at 685B = 671B + 11.6B + 2 × 0.93B).
 */
public record ParameterCount(
        long embedding,
        long lmHead,
        long attention,
        long norms,
        long denseMlp,
        long routers,
        long sharedExperts,
        long routedExperts,
        long activeRoutedExperts,
        long paramsPerExpert,
        int mtpModules,
        long mtpParams) {

    public static ParameterCount of(ModelConfig c) {
        return of(c, 0);
    }

    /** Counts with {@code mtpModules} multi-token-prediction modules beside the main model (DeepSeek-V3: 1). */
    public static ParameterCount of(ModelConfig c, int mtpModules) {
        long h = c.hidden();
        long embedding = (long) c.vocabSize() * h;
        long lmHead = c.tieEmbeddings() ? 0 : embedding;
        long attnPerLayer = attentionPerLayer(c);
        long attention = attnPerLayer * c.layers();
        long norms = 2 * h * c.layers() + h;
        int sparse = c.sparseLayerCount();
        int dense = c.layers() - sparse;
        long denseMlp = dense * 3 * h * c.denseIntermediate();
        long perExpert = 3 * h * c.moeIntermediate();
        if (c.ffn().expertBias()) {
            perExpert += 2L * c.moeIntermediate() + h; // gate_up_proj_bias, down_proj_bias
        }
        long routerPerLayer = routerPerLayer(c);
        long sharedPerLayer = sharedPerLayer(c);
        long mtp = 0;
        if (mtpModules > 0) {
            long moeLayer = attnPerLayer + 2 * h + routerPerLayer + sharedPerLayer + c.numExperts() * perExpert;
            long module = 2 * h /* enorm, hnorm */ + 2 * h * h /* eh_proj */ + moeLayer + h /* shared_head.norm */;
            mtp = mtpModules * module;
        }
        return new ParameterCount(embedding, lmHead, attention, norms, denseMlp, sparse * routerPerLayer,
                sparse * sharedPerLayer, sparse * c.numExperts() * perExpert, sparse * c.topK() * perExpert, perExpert,
                mtpModules, mtp);
    }

    static long attentionPerLayer(ModelConfig c) {
        long h = c.hidden();
        long heads = c.heads();
        ModelConfig.Mla m = c.mla();
        if (m != null) {
            long qOut = heads * m.qkHeadDim();
            long q = m.qLoraRank() > 0 ? h * m.qLoraRank() + m.qLoraRank() + (long) m.qLoraRank() * qOut : h * qOut;
            long kvA = h * (m.kvLoraRank() + m.qkRopeDim()) + m.kvLoraRank();
            long kvB = (long) m.kvLoraRank() * heads * (m.qkNopeDim() + m.vHeadDim());
            long o = heads * m.vHeadDim() * h;
            return q + kvA + kvB + o;
        }
        long qDim = heads * c.headDim();
        long kvDim = (long) c.kvHeads() * c.headDim();
        long p = h * qDim + 2 * h * kvDim + qDim * h;
        if (c.qkvBias()) {
            p += qDim + 2 * kvDim;
        }
        p += switch (c.qkNorm()) {
            case NONE -> 0;
            case PER_HEAD -> 2L * c.headDim();
            case WHOLE -> qDim + kvDim;
        };
        if (c.attention() instanceof AttentionConfig.Gqa g) {
            p += (g.oBias() ? h : 0) + (g.sinks() ? heads : 0);
        }
        return p;
    }

    static long routerPerLayer(ModelConfig c) {
        long gate = (long) c.numExperts() * c.hidden();
        // DeepSeek-V3's aux-loss-free balancing bias and gpt-oss's router bias, one per expert
        boolean bias = c.router() instanceof RouterConfig.GroupedSigmoid || c.router() instanceof RouterConfig.TopKSoftmax;
        return bias ? gate + c.numExperts() : gate;
    }

    static long sharedPerLayer(ModelConfig c) {
        if (c.sharedIntermediate() <= 0) {
            return 0;
        }
        long p = 3L * c.hidden() * c.sharedIntermediate();
        return c.sharedExpertGate() ? p + c.hidden() : p;
    }

    /** Every parameter of the main model (MTP modules excluded, see the class comment). */
    public long total() {
        return embedding + lmHead + attention + norms + denseMlp + routers + sharedExperts + routedExperts;
    }

    /** Parameters one token passes through: all but the routed experts it is not sent to. */
    public long active() {
        return total() - routedExperts + activeRoutedExperts;
    }

    /** {@link #active()} without the input embedding table, which a token looks up rather than multiplies (DeepSeek's convention). */
    public long activeComputeParams() {
        return lmHead > 0 ? active() - embedding : active();
    }

    /** The parameters outside the routed experts: what a frontend holds. */
    public long nonExpert() {
        return total() - routedExperts;
    }

    /** Components in print order, name → parameters. */
    public Map<String, Long> components() {
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("embedding", embedding);
        m.put("lm_head", lmHead);
        m.put("attention", attention);
        m.put("norms", norms);
        m.put("dense_mlp", denseMlp);
        m.put("routers", routers);
        m.put("shared_experts", sharedExperts);
        m.put("routed_experts", routedExperts);
        return m;
    }
}
