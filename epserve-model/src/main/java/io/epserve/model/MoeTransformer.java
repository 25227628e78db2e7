package io.epserve.model;

import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.GroupedSigmoidRouter;
import io.epserve.moe.HashRouter;
import io.epserve.moe.Router;
import io.epserve.moe.RoutingResult;
import io.epserve.moe.SoftmaxTopKRouter;
import io.epserve.moe.SwiGlu;
import io.epserve.tensor.Kernels;
import io.epserve.tensor.Tensor;

/**
 * The decoder-only MoE transformer forward pass, for every supported architecture:
 * <pre>
 *   x = embed(tokens)
 *   for each layer:  x += Attention(RMSNorm(x))            (GQA or MLA, RoPE, KV cache)
 *                    x += FFN(RMSNorm(x))                  (dense SwiGLU, or
 *                                                          Router → Dispatch → Experts → Combine
 *                                                          + shared expert)
 *   logits = lm_head(RMSNorm(x))
 * </pre>
 * The routed experts run behind an {@link ExpertDispatcher}, so the same code drives in-process
 * experts and remote expert workers. Immutable after construction; per-sequence state is the
 * {@link KvCache}.
 */
public final class MoeTransformer {

    /** Which router the sparse layers use. */
    public enum RouterChoice {
        /** The router the checkpoint was trained with (its gate weights). */
        LEARNED,
        /** {@link HashRouter}: expert = hash(token id) mod E with a fixed seed; an experiment. */
        HASH
    }

    private final ModelConfig cfg;
    private final ModelWeights w;
    private final Router[] routers;
    private final ExpertDispatcher dispatcher;
    private final RopeTable rope;
    private final float attentionScale;

    public MoeTransformer(ModelWeights weights, ExpertDispatcher dispatcher, RouterChoice routerChoice) {
        this.cfg = weights.config();
        this.w = weights;
        this.dispatcher = dispatcher;
        this.rope = new RopeTable(cfg);
        this.routers = new Router[cfg.layers()];
        for (int l = 0; l < cfg.layers(); l++) {
            if (!cfg.isSparse(l)) {
                continue;
            }
            LayerWeights.Moe moe = (LayerWeights.Moe) w.layer(l).ffn();
            routers[l] = switch (routerChoice) {
                case HASH -> new HashRouter(cfg.numExperts(), cfg.topK(), HashRouter.DEFAULT_SEED + l);
                case LEARNED -> switch (cfg.routerKind()) {
                    case SOFTMAX_TOPK -> new SoftmaxTopKRouter(cfg.numExperts(), cfg.topK(), cfg.normTopkProb());
                    case SIGMOID_GROUPED_TOPK -> new GroupedSigmoidRouter(cfg.numExperts(), cfg.topK(), cfg.nGroup(),
                            cfg.topkGroup(), moe.correctionBias(), cfg.normTopkProb(), cfg.routedScalingFactor());
                };
            };
        }
        double scale = 1.0 / Math.sqrt(cfg.keyHeadDim());
        if (cfg.mla() != null && cfg.ropeScaling() != null && cfg.ropeScaling().mscaleAllDim() != 0) {
            double m = RopeScaling.yarnMscale(cfg.ropeScaling().factor(), cfg.ropeScaling().mscaleAllDim());
            scale *= m * m;
        }
        this.attentionScale = (float) scale;
    }

    public ModelConfig config() {
        return cfg;
    }

    public ModelWeights weights() {
        return w;
    }

    public KvCache newCache(int capacity) {
        return new KvCache(cfg, capacity);
    }

    /**
     * Runs {@code n} tokens that continue the sequence in {@code cache} (prefill when n > 1,
     * decode when n = 1) and appends their keys/values to it. Returns logits {@code [n, vocab]}
     * when {@code allLogits}, else the last position's {@code [vocab]}.
     */
    public float[] forward(KvCache cache, int[] tokens, int n, boolean allLogits, RoutingListener listener) {
        int h = cfg.hidden();
        int start = cache.length();
        if (start + n > cfg.maxPositions()) {
            throw new IllegalArgumentException("sequence of " + (start + n) + " tokens exceeds max_position_embeddings "
                    + cfg.maxPositions());
        }
        for (int i = 0; i < n; i++) {
            if (tokens[i] < 0 || tokens[i] >= cfg.vocabSize()) {
                throw new IllegalArgumentException("token id " + tokens[i] + " outside the vocabulary [0, " + cfg.vocabSize() + ")");
            }
        }
        cache.ensureCapacity(start + n);
        rope.ensure(start + n);
        float[] x = new float[n * h];
        Tensor embed = w.embed();
        for (int i = 0; i < n; i++) {
            long base = (long) tokens[i] * h;
            for (int j = 0; j < h; j++) {
                x[i * h + j] = embed.getFloat(base + j);
            }
        }
        float[] xn = new float[n * h];
        float[] delta = new float[n * h];
        for (int l = 0; l < cfg.layers(); l++) {
            LayerWeights lw = w.layer(l);
            Kernels.rmsnorm(x, 0, n, h, lw.inputNorm(), cfg.rmsEps(), xn, 0);
            attention(l, cache, start, n, xn, delta);
            Kernels.axpy(1f, delta, 0, x, 0, n * h);
            Kernels.rmsnorm(x, 0, n, h, lw.postAttentionNorm(), cfg.rmsEps(), xn, 0);
            feedForward(l, tokens, n, xn, delta, listener);
            Kernels.axpy(1f, delta, 0, x, 0, n * h);
        }
        cache.advance(n);
        int from = allLogits ? 0 : n - 1;
        int rows = n - from;
        Kernels.rmsnorm(x, from * h, rows, h, w.finalNorm(), cfg.rmsEps(), xn, 0);
        float[] logits = new float[rows * cfg.vocabSize()];
        Kernels.matmul(xn, 0, rows, w.lmHead(), logits, 0);
        return logits;
    }

    /**
     * One layer's attention block (after its input norm): {@code out = o_proj(attn(xn))} for n
     * tokens at positions {@code start..start+n-1}; writes their keys/values into the cache
     * (the caller advances it).
     */
    public void attention(int layer, KvCache cache, int start, int n, float[] xn, float[] out) {
        cache.ensureCapacity(start + n);
        rope.ensure(start + n);
        switch (w.layer(layer).attention()) {
            case LayerWeights.Gqa g -> gqa(layer, g, cache, start, n, xn, out);
            case LayerWeights.Mla m -> mla(layer, m, cache, start, n, xn, out);
        }
    }

    /** One layer's feed-forward block (after its post-attention norm): dense SwiGLU or MoE + shared expert. */
    public void feedForward(int layer, int[] tokens, int n, float[] xn, float[] out, RoutingListener listener) {
        switch (w.layer(layer).ffn()) {
            case LayerWeights.Dense d -> SwiGlu.forward(d.mlp(), xn, 0, n, out, 0, new float[2 * n * d.mlp().intermediate()]);
            case LayerWeights.Moe m -> moe(layer, m, tokens, n, xn, out, listener);
        }
    }

    private void gqa(int layer, LayerWeights.Gqa a, KvCache cache, int start, int n, float[] xn, float[] out) {
        int hd = cfg.headDim();
        int qDim = cfg.heads() * hd;
        int kvDim = cfg.kvHeads() * hd;
        float[] q = new float[n * qDim];
        float[] k = new float[n * kvDim];
        float[] v = new float[n * kvDim];
        Kernels.matmul(xn, 0, n, a.q(), q, 0);
        Kernels.matmul(xn, 0, n, a.k(), k, 0);
        Kernels.matmul(xn, 0, n, a.v(), v, 0);
        if (a.qBias() != null) {
            addBias(q, n, a.qBias());
            addBias(k, n, a.kBias());
            addBias(v, n, a.vBias());
        }
        switch (cfg.qkNorm()) {
            case PER_HEAD -> {
                Kernels.rmsnorm(q, 0, n * cfg.heads(), hd, a.qNorm(), cfg.rmsEps(), q, 0);
                Kernels.rmsnorm(k, 0, n * cfg.kvHeads(), hd, a.kNorm(), cfg.rmsEps(), k, 0);
            }
            case WHOLE -> {
                Kernels.rmsnorm(q, 0, n, qDim, a.qNorm(), cfg.rmsEps(), q, 0);
                Kernels.rmsnorm(k, 0, n, kvDim, a.kNorm(), cfg.rmsEps(), k, 0);
            }
            case NONE -> { }
        }
        if (cfg.clipQkv() > 0) {
            clamp(q, cfg.clipQkv());
            clamp(k, cfg.clipQkv());
            clamp(v, cfg.clipQkv());
        }
        float[] keys = cache.keys(layer);
        float[] values = cache.values(layer);
        for (int i = 0; i < n; i++) {
            int pos = start + i;
            Kernels.rope(q, i * qDim, cfg.heads(), hd, hd, rope.cos(), rope.sin(), rope.offset(pos), cfg.ropeStyle());
            Kernels.rope(k, i * kvDim, cfg.kvHeads(), hd, hd, rope.cos(), rope.sin(), rope.offset(pos), cfg.ropeStyle());
            System.arraycopy(k, i * kvDim, keys, pos * kvDim, kvDim);
            System.arraycopy(v, i * kvDim, values, pos * kvDim, kvDim);
        }
        float[] attn = new float[n * qDim];
        attend(keys, values, kvDim, kvDim, cfg.kvHeads(), hd, hd, start, n, q, qDim, attn);
        Kernels.matmul(attn, 0, n, a.o(), out, 0);
    }

    private void mla(int layer, LayerWeights.Mla a, KvCache cache, int start, int n, float[] xn, float[] out) {
        ModelConfig.Mla m = cfg.mla();
        int heads = cfg.heads();
        int qkHead = m.qkHeadDim();
        int qDim = heads * qkHead;
        float[] q = new float[n * qDim];
        if (a.qA() != null) {
            float[] qa = new float[n * m.qLoraRank()];
            Kernels.matmul(xn, 0, n, a.qA(), qa, 0);
            Kernels.rmsnorm(qa, 0, n, m.qLoraRank(), a.qANorm(), cfg.rmsEps(), qa, 0);
            Kernels.matmul(qa, 0, n, a.qB(), q, 0);
        } else {
            Kernels.matmul(xn, 0, n, a.q(), q, 0);
        }
        int kvaDim = m.kvLoraRank() + m.qkRopeDim();
        float[] kva = new float[n * kvaDim];
        Kernels.matmul(xn, 0, n, a.kvA(), kva, 0);
        float[] latent = new float[n * m.kvLoraRank()];
        for (int i = 0; i < n; i++) {
            System.arraycopy(kva, i * kvaDim, latent, i * m.kvLoraRank(), m.kvLoraRank());
        }
        Kernels.rmsnorm(latent, 0, n, m.kvLoraRank(), a.kvANorm(), cfg.rmsEps(), latent, 0);
        int kvbDim = heads * (m.qkNopeDim() + m.vHeadDim());
        float[] kv = new float[n * kvbDim];
        Kernels.matmul(latent, 0, n, a.kvB(), kv, 0);
        int keyStride = heads * qkHead;
        int valueStride = heads * m.vHeadDim();
        float[] keys = cache.keys(layer);
        float[] values = cache.values(layer);
        for (int i = 0; i < n; i++) {
            int pos = start + i;
            // rope on the last qk_rope dims of each query head, and on the one shared rope key
            for (int hh = 0; hh < heads; hh++) {
                Kernels.rope(q, i * qDim + hh * qkHead + m.qkNopeDim(), 1, m.qkRopeDim(), m.qkRopeDim(),
                        rope.cos(), rope.sin(), rope.offset(pos), cfg.ropeStyle());
            }
            int pe = i * kvaDim + m.kvLoraRank();
            Kernels.rope(kva, pe, 1, m.qkRopeDim(), m.qkRopeDim(), rope.cos(), rope.sin(), rope.offset(pos), cfg.ropeStyle());
            for (int hh = 0; hh < heads; hh++) {
                int src = i * kvbDim + hh * (m.qkNopeDim() + m.vHeadDim());
                int kd = pos * keyStride + hh * qkHead;
                System.arraycopy(kv, src, keys, kd, m.qkNopeDim());
                System.arraycopy(kva, pe, keys, kd + m.qkNopeDim(), m.qkRopeDim());
                System.arraycopy(kv, src + m.qkNopeDim(), values, pos * valueStride + hh * m.vHeadDim(), m.vHeadDim());
            }
        }
        float[] attn = new float[n * valueStride];
        attend(keys, values, keyStride, valueStride, heads, qkHead, m.vHeadDim(), start, n, q, qDim, attn);
        Kernels.matmul(attn, 0, n, a.o(), out, 0);
    }

    /** Causal attention of n new queries (positions start..start+n-1) over the cache. */
    private void attend(float[] keys, float[] values, int keyStride, int valueStride, int kvHeads, int hdK, int hdV,
                        int start, int n, float[] q, int qStride, float[] out) {
        float[] scores = new float[start + n];
        int heads = cfg.heads();
        for (int i = 0; i < n; i++) {
            int pos = start + i;
            int first = cfg.slidingWindow() > 0 ? Math.max(0, pos - cfg.slidingWindow() + 1) : 0;
            Kernels.attention(q, i * qStride, keys, first * keyStride, values, first * valueStride, keyStride, valueStride,
                    pos + 1 - first, heads, kvHeads, hdK, hdV, attentionScale, out, i * heads * hdV, scores);
        }
    }

    private void moe(int layer, LayerWeights.Moe m, int[] tokens, int n, float[] xn, float[] out, RoutingListener listener) {
        int h = cfg.hidden();
        int e = cfg.numExperts();
        Router router = routers[layer];
        float[] logits = null;
        if (router.needsLogits()) {
            logits = new float[n * e];
            Kernels.matmul(xn, 0, n, m.gate(), logits, 0);
        }
        RoutingResult routing = router.route(logits, tokens, n);
        listener.onRouting(layer, routing);
        dispatcher.dispatch(layer, xn, h, routing, out);
        if (m.shared() != null) {
            float[] shared = new float[n * h];
            SwiGlu.forward(m.shared(), xn, 0, n, shared, 0, new float[2 * n * m.shared().intermediate()]);
            if (m.sharedGate() != null) {
                float[] g = new float[n];
                Kernels.matmul(xn, 0, n, m.sharedGate(), g, 0);
                for (int i = 0; i < n; i++) {
                    float s = (float) (1.0 / (1.0 + Math.exp(-g[i])));
                    Kernels.axpy(s, shared, i * h, out, i * h, h);
                }
            } else {
                Kernels.axpy(1f, shared, 0, out, 0, n * h);
            }
        }
    }

    private static void addBias(float[] x, int n, float[] bias) {
        int d = bias.length;
        for (int i = 0; i < n; i++) {
            Kernels.axpy(1f, bias, 0, x, i * d, d);
        }
    }

    private static void clamp(float[] x, float c) {
        for (int i = 0; i < x.length; i++) {
            x[i] = Math.max(-c, Math.min(c, x[i]));
        }
    }
}
