package io.epserve.model;

import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.GroupedSigmoidRouter;
import io.epserve.moe.GroupedSoftmaxRouter;
import io.epserve.moe.HashRouter;
import io.epserve.moe.Router;
import io.epserve.moe.RoutingResult;
import io.epserve.moe.SoftmaxTopKRouter;
import io.epserve.moe.SwiGlu;
import io.epserve.moe.TopKSoftmaxRouter;
import io.epserve.tensor.Bf16;
import io.epserve.tensor.Kernels;
import io.epserve.tensor.RowAttention;
import io.epserve.tensor.Tensor;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicReference;

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
 * A step runs any number of sequences at once ({@link SequenceChunk}s: a prefill chunk or one
 * decode token each); every matrix product runs over all the step's tokens, and each MoE layer is
 * one dispatch. The routed experts run behind an {@link ExpertDispatcher}, so the same code drives
 * in-process experts and remote expert workers.
 *
 * <p><b>Two-batch overlap.</b> With {@code overlap} on and at least two tokens, the step's tokens
 * are split into micro-batches A and B, pipelined so that one micro-batch's expert dispatch is in
 * flight while the other computes attention and the shared expert (as DeepSeek's and SGLang's
 * two-batch overlap):
 * <pre>
 *   layer l:  attn(A,l) · start(A,l) · finish(B,l-1) · attn(B,l) · start(B,l) · finish(A,l)
 * </pre>
 * Each token's result does not depend on the split or on the other tokens of the step.
 *
 * <p><b>Memory.</b> The weights are immutable and shared; everything a step writes lives in a
 * {@link Workspace} this transformer keeps and reuses step after step (activations, attention
 * scratch, router logits and routings, the micro-batches' expert outputs), grown when a larger
 * step arrives and never shrunk, and the in-process dispatcher keeps its own reusable plan and
 * expert scratch. With {@link #step(List, RoutingListener, StepLogits)} a steady-state step
 * therefore allocates nothing on the Java heap (DESIGN.md §3.4; AllocationTest measures it). One
 * step at a time per transformer uses the workspace; a concurrent step gets a private one.
 */
public final class MoeTransformer {

    /** Which router the sparse layers use. */
    public enum RouterChoice {
        /** The router the checkpoint was trained with (its gate weights). */
        LEARNED,
        /** {@link HashRouter}: expert = hash(token id) mod E with a fixed seed; an experiment. */
        HASH
    }

    /** Which logits a chunk wants back. */
    public enum Logits { NONE, LAST, ALL }

    /**
     * One sequence's part of a step: {@code count} tokens from {@code tokens[offset]}, continuing
     * the sequence cached in {@code cache} (positions {@code cache.length()} on).
     */
    public record SequenceChunk(KvCache cache, int[] tokens, int offset, int count, Logits logits) {
        public SequenceChunk {
            if (count < 1 || offset < 0 || offset + count > tokens.length) {
                throw new IllegalArgumentException("chunk of " + count + " tokens at " + offset + " outside " + tokens.length);
            }
        }
    }

    private final ModelConfig cfg;
    private final ModelWeights w;
    private final Router[] routers;
    private final ExpertDispatcher dispatcher;
    private final RopeTable rope;
    private final float attentionScale;
    private final KvLayout kvLayout;
    /** Per MLA layer with a compressed cache: kv_b_proj split for absorbed attention (else null). */
    private final MlaAbsorbed[] absorbed;
    private volatile boolean overlap;
    /** The step workspace, taken by a step and put back after it (see {@link #step(List, RoutingListener, StepLogits)}). */
    private final AtomicReference<Workspace> spare = new AtomicReference<>(new Workspace());

    public MoeTransformer(ModelWeights weights, ExpertDispatcher dispatcher, RouterChoice routerChoice) {
        this(weights, dispatcher, routerChoice, KvOptions.defaults());
    }

    /** A transformer whose KV caches are laid out as {@code kv} says (see {@link #kvLayout()}). */
    public MoeTransformer(ModelWeights weights, ExpertDispatcher dispatcher, RouterChoice routerChoice, KvOptions kv) {
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
                case LEARNED -> learnedRouter(cfg, moe);
            };
        }
        double scale = 1.0 / Math.sqrt(cfg.keyHeadDim());
        if (cfg.mla() != null && cfg.ropeScaling() != null && cfg.ropeScaling().mscaleAllDim() != 0) {
            double m = RopeScaling.yarnMscale(cfg.ropeScaling().factor(), cfg.ropeScaling().mscaleAllDim());
            scale *= m * m;
        }
        this.attentionScale = (float) scale;
        this.kvLayout = KvLayout.of(cfg, kv);
        this.absorbed = new MlaAbsorbed[cfg.layers()];
        if (kvLayout.sharedRows()) {
            for (int l = 0; l < cfg.layers(); l++) {
                absorbed[l] = MlaAbsorbed.of(((LayerWeights.Mla) w.layer(l).attention()).kvB(), cfg.heads(), cfg.mla());
            }
        }
    }

    /** How this transformer's KV caches store a token (every cache a step gets must have it). */
    public KvLayout kvLayout() {
        return kvLayout;
    }

    /** The router the checkpoint was trained with, for one sparse layer's weights. */
    static Router learnedRouter(ModelConfig cfg, LayerWeights.Moe moe) {
        return switch (cfg.router()) {
            case RouterConfig.SoftmaxTopK r -> new SoftmaxTopKRouter(r.experts(), r.k(), r.normTopk());
            case RouterConfig.GroupedSigmoid r -> new GroupedSigmoidRouter(r.experts(), r.k(), r.nGroup(), r.topkGroup(),
                    moe.correctionBias(), r.normTopk(), r.scale());
            case RouterConfig.GroupedSoftmax r -> new GroupedSoftmaxRouter(r.experts(), r.k(), r.nGroup(), r.topkGroup(),
                    r.normTopk(), r.scale());
            case RouterConfig.TopKSoftmax r -> new TopKSoftmaxRouter(r.experts(), r.k());
        };
    }

    public ModelConfig config() {
        return cfg;
    }

    public ModelWeights weights() {
        return w;
    }

    public ExpertDispatcher dispatcher() {
        return dispatcher;
    }

    /** Switches two-batch overlap (see the class comment); off by default. */
    public void setOverlap(boolean on) {
        this.overlap = on;
    }

    public boolean overlap() {
        return overlap;
    }

    public KvCache newCache(int capacity) {
        return new ContiguousKvCache(kvLayout, capacity);
    }

    /**
     * Runs {@code n} tokens that continue the sequence in {@code cache} (prefill when n > 1,
     * decode when n = 1). Returns logits {@code [n, vocab]} when {@code allLogits}, else the last
     * position's {@code [vocab]}, in a new array.
     */
    public float[] forward(KvCache cache, int[] tokens, int n, boolean allLogits, RoutingListener listener) {
        return step(List.of(new SequenceChunk(cache, tokens, 0, n, allLogits ? Logits.ALL : Logits.LAST)), listener)[0];
    }

    /**
     * One step over several sequences: appends each chunk's keys/values to its cache and returns,
     * per chunk, its logits ({@code [rows, vocab]}, rows = 1 for LAST) or null for NONE, in new
     * arrays. A serving loop that wants no allocation per step uses
     * {@link #step(List, RoutingListener, StepLogits)}.
     */
    public float[][] step(List<SequenceChunk> chunks, RoutingListener listener) {
        StepLogits logits = new StepLogits();
        step(chunks, listener, logits);
        float[][] out = new float[chunks.size()][];
        for (int c = 0; c < out.length; c++) {
            out[c] = logits.copy(c);
        }
        return out;
    }

    /**
     * One step over several sequences, as {@link #step(List, RoutingListener)}, with the logits
     * written into {@code out} (the caller's, reused from step to step). The step's activations
     * and scratch come from this transformer's workspace, reused by every step, so a steady-state
     * step allocates nothing on the Java heap (DESIGN.md §3.4).
     *
     * <p>The {@link RoutingResult}s handed to {@code listener} live in that workspace, one per
     * layer (and micro-batch): they stay valid until this transformer's next step, and a listener
     * that keeps one longer must copy it.
     *
     * <p>Thread-safety: meant to run one step at a time (the engine's loop). A step that starts
     * while another is running on the same transformer gets a workspace of its own (allocated for
     * that step), so concurrent steps stay correct, just not allocation-free.
     */
    public void step(List<SequenceChunk> chunks, RoutingListener listener, StepLogits out) {
        Workspace ws = spare.getAndSet(null);
        if (ws == null) {
            ws = new Workspace();
        }
        boolean reusable = true;
        try {
            prepare(ws, chunks);
            int n = ws.n;
            int mbs = overlap && n >= 2 ? 2 : 1;
            Workspace.MicroBatch[] mb = ws.batches;
            for (int i = 0; i < mbs; i++) {
                mb[i].reset(i * n / mbs, (i + 1) * n / mbs, cfg.hidden());
            }
            try {
                for (int l = 0; l < cfg.layers(); l++) {
                    attentionBlock(l, ws, mb[0]);
                    startFfn(l, ws, mb[0], listener);
                    if (mbs == 2) {
                        if (l > 0) {
                            finishFfn(ws, mb[1]);
                        }
                        attentionBlock(l, ws, mb[1]);
                        startFfn(l, ws, mb[1], listener);
                    }
                    finishFfn(ws, mb[0]);
                }
                if (mbs == 2) {
                    finishFfn(ws, mb[1]);
                }
            } catch (RuntimeException e) {
                for (int i = 0; i < mbs; i++) {
                    if (mb[i].abandon()) {
                        // a cancelled remote dispatch may still write its micro-batch's buffers: never reuse them
                        reusable = false;
                    }
                }
                throw e;
            }
            for (int c = 0, size = chunks.size(); c < size; c++) {
                SequenceChunk ch = chunks.get(c);
                ch.cache().advance(ch.count());
            }
            logits(ws, chunks, out);
        } finally {
            ws.clearCaches();
            if (reusable) {
                spare.set(ws);
            }
        }
    }

    /** Flattens the step's tokens into the workspace (row i of every activation buffer is token i) and embeds them. */
    private void prepare(Workspace ws, List<SequenceChunk> chunks) {
        int size = chunks.size();
        int total = 0;
        for (int c = 0; c < size; c++) {
            total += chunks.get(c).count();
        }
        if (total == 0) {
            throw new IllegalArgumentException("a step needs at least one token");
        }
        int h = cfg.hidden();
        ws.resetStep(total, h);
        int[] tokens = ws.tokens;
        int[] pos = ws.pos;
        KvCache[] cacheOf = ws.cacheOf;
        int i = 0;
        for (int c = 0; c < size; c++) {
            SequenceChunk ch = chunks.get(c);
            KvCache cache = ch.cache();
            if (cache.keyStride() != kvLayout.keyStride() || cache.valueStride() != kvLayout.valueStride()
                    || cache.dtype() != kvLayout.dtype()) {
                throw new IllegalArgumentException("a KV cache of rows " + cache.keyStride() + "+" + cache.valueStride() + " "
                        + cache.dtype() + " does not fit this transformer's layout " + kvLayout);
            }
            int start = cache.length();
            if (start + ch.count() > cfg.maxPositions()) {
                throw new IllegalArgumentException("sequence of " + (start + ch.count()) + " tokens exceeds max_position_embeddings "
                        + cfg.maxPositions());
            }
            cache.reserve(start + ch.count());
            int[] src = ch.tokens();
            for (int j = 0; j < ch.count(); j++, i++) {
                int t = src[ch.offset() + j];
                if (t < 0 || t >= cfg.vocabSize()) {
                    throw new IllegalArgumentException("token id " + t + " outside the vocabulary [0, " + cfg.vocabSize() + ")");
                }
                tokens[i] = t;
                pos[i] = start + j;
                cacheOf[i] = cache;
            }
            rope.ensure(start + ch.count());
        }
        float[] x = ws.x;
        Tensor embed = w.embed();
        for (i = 0; i < total; i++) {
            long base = (long) tokens[i] * h;
            for (int j = 0; j < h; j++) {
                x[i * h + j] = embed.getFloat(base + j);
            }
        }
    }

    private static int logitRows(SequenceChunk c) {
        return switch (c.logits()) {
            case NONE -> 0;
            case LAST -> 1;
            case ALL -> c.count();
        };
    }

    /** Final norm and lm_head over the rows the chunks asked for, into out. */
    private void logits(Workspace ws, List<SequenceChunk> chunks, StepLogits out) {
        int h = cfg.hidden();
        int v = cfg.vocabSize();
        int size = chunks.size();
        int rows = 0;
        for (int c = 0; c < size; c++) {
            rows += logitRows(chunks.get(c));
        }
        out.prepare(size, v, rows);
        int r = 0;
        for (int c = 0; c < size; c++) {
            int k = logitRows(chunks.get(c));
            out.set(c, k == 0 ? -1 : r * v, k);
            r += k;
        }
        if (rows == 0) {
            return;
        }
        float[] sel = ws.sel = Workspace.floats(ws.sel, rows * h);
        float[] x = ws.x;
        r = 0;
        int i = 0;
        for (int c = 0; c < size; c++) {
            SequenceChunk ch = chunks.get(c);
            for (int j = ch.count() - logitRows(ch); j < ch.count(); j++) {
                System.arraycopy(x, (i + j) * h, sel, r++ * h, h);
            }
            i += ch.count();
        }
        Kernels.rmsnorm(sel, 0, rows, h, w.finalNorm(), cfg.rmsEps(), sel, 0);
        Kernels.matmul(sel, 0, rows, w.lmHead(), out.data(), 0);
    }

    private void attentionBlock(int layer, Workspace ws, Workspace.MicroBatch m) {
        int h = cfg.hidden();
        LayerWeights lw = w.layer(layer);
        Kernels.rmsnorm(ws.x, m.from * h, m.n, h, lw.inputNorm(), cfg.rmsEps(), m.xn, 0);
        switch (lw.attention()) {
            case LayerWeights.Gqa g -> gqa(layer, g, ws.cacheOf, ws.pos, m.from, m.n, m.xn, m.delta, ws);
            case LayerWeights.Mla a -> mla(layer, a, ws.cacheOf, ws.pos, m.from, m.n, m.xn, m.delta, ws);
        }
        Kernels.axpy(1f, m.delta, 0, ws.x, m.from * h, m.n * h);
    }

    /** Post-attention norm, then a dense FFN (done at once) or router + async dispatch + shared expert. */
    private void startFfn(int layer, Workspace ws, Workspace.MicroBatch m, RoutingListener listener) {
        int h = cfg.hidden();
        LayerWeights lw = w.layer(layer);
        Kernels.rmsnorm(ws.x, m.from * h, m.n, h, lw.postAttentionNorm(), cfg.rmsEps(), m.xn, 0);
        switch (lw.ffn()) {
            case LayerWeights.Dense d -> {
                float[] scratch = ws.swiglu = Workspace.floats(ws.swiglu, 2 * m.n * d.mlp().intermediate());
                SwiGlu.forward(d.mlp(), m.xn, 0, m.n, m.delta, 0, scratch);
                m.hasShared = false;
            }
            case LayerWeights.Moe moe -> {
                int[] tokens = m.tokens = Workspace.ints(m.tokens, m.n);
                System.arraycopy(ws.tokens, m.from, tokens, 0, m.n);
                Router router = routers[layer];
                float[] logits = null;
                if (router.needsLogits()) {
                    logits = m.routerLogits = Workspace.floats(m.routerLogits, m.n * cfg.numExperts());
                    Kernels.matmul(m.xn, 0, m.n, moe.gate(), logits, 0);
                    if (moe.gateBias() != null) {
                        addBias(logits, m.n, moe.gateBias());
                    }
                }
                RoutingResult routing = router.route(logits, tokens, m.n, m.routing(layer));
                listener.onRouting(layer, routing);
                // xn must stay untouched while the dispatch reads it: the shared expert only reads it too
                m.inFlight = dispatcher.dispatchAsync(layer, m.xn, h, routing, m.delta);
                m.hasShared = moe.shared() != null;
                if (m.hasShared) {
                    m.shared = Workspace.floats(m.shared, m.n * h);
                    sharedExpert(moe, m.xn, m.n, m.shared, ws, m);
                }
            }
        }
    }

    private void finishFfn(Workspace ws, Workspace.MicroBatch m) {
        int h = cfg.hidden();
        if (m.inFlight != null) {
            try {
                m.inFlight.join();
            } catch (CompletionException e) {
                if (e.getCause() instanceof RuntimeException re) {
                    throw re;
                }
                throw e;
            } finally {
                m.inFlight = null;
            }
            if (m.hasShared) {
                Kernels.axpy(1f, m.shared, 0, m.delta, 0, m.n * h);
            }
        }
        Kernels.axpy(1f, m.delta, 0, ws.x, m.from * h, m.n * h);
    }

    /** The shared expert's output into {@code shared}, times Qwen2-MoE's sigmoid gate where the model has one. */
    private void sharedExpert(LayerWeights.Moe moe, float[] xn, int n, float[] shared, Workspace ws, Workspace.MicroBatch m) {
        int h = cfg.hidden();
        float[] scratch = ws.swiglu = Workspace.floats(ws.swiglu, 2 * n * moe.shared().intermediate());
        SwiGlu.forward(moe.shared(), xn, 0, n, shared, 0, scratch);
        if (moe.sharedGate() != null) {
            float[] g = m.sharedGate = Workspace.floats(m.sharedGate, n);
            Kernels.matmul(xn, 0, n, moe.sharedGate(), g, 0);
            for (int i = 0; i < n; i++) {
                float sg = (float) (1.0 / (1.0 + Math.exp(-g[i])));
                for (int j = 0; j < h; j++) {
                    shared[i * h + j] *= sg;
                }
            }
        }
    }

    /**
     * One layer's attention block (after its input norm) for a single sequence's n tokens at
     * positions {@code start..start+n-1}: {@code out = o_proj(attn(xn))}; writes their keys/values
     * into the cache (the caller advances it). A diagnostic entry point: it allocates its scratch.
     */
    public void attention(int layer, KvCache cache, int start, int n, float[] xn, float[] out) {
        cache.reserve(start + n);
        rope.ensure(start + n);
        int[] pos = new int[n];
        KvCache[] caches = new KvCache[n];
        for (int i = 0; i < n; i++) {
            pos[i] = start + i;
            caches[i] = cache;
        }
        Workspace ws = new Workspace();
        switch (w.layer(layer).attention()) {
            case LayerWeights.Gqa g -> gqa(layer, g, caches, pos, 0, n, xn, out, ws);
            case LayerWeights.Mla m -> mla(layer, m, caches, pos, 0, n, xn, out, ws);
        }
    }

    /**
     * One layer's feed-forward block (after its post-attention norm): dense SwiGLU or MoE + shared
     * expert. A diagnostic entry point: it allocates its scratch.
     */
    public void feedForward(int layer, int[] tokens, int n, float[] xn, float[] out, RoutingListener listener) {
        switch (w.layer(layer).ffn()) {
            case LayerWeights.Dense d -> SwiGlu.forward(d.mlp(), xn, 0, n, out, 0, new float[2 * n * d.mlp().intermediate()]);
            case LayerWeights.Moe m -> {
                Router router = routers[layer];
                float[] logits = null;
                if (router.needsLogits()) {
                    logits = new float[n * cfg.numExperts()];
                    Kernels.matmul(xn, 0, n, m.gate(), logits, 0);
                    if (m.gateBias() != null) {
                        addBias(logits, n, m.gateBias());
                    }
                }
                RoutingResult routing = router.route(logits, tokens, n);
                listener.onRouting(layer, routing);
                dispatcher.dispatch(layer, xn, cfg.hidden(), routing, out);
                if (m.shared() != null) {
                    Workspace ws = new Workspace();
                    float[] shared = new float[n * cfg.hidden()];
                    sharedExpert(m, xn, n, shared, ws, ws.batches[0]);
                    Kernels.axpy(1f, shared, 0, out, 0, n * cfg.hidden());
                }
            }
        }
    }

    /** Tokens [from, from+n) of the step arrays; xn and out are micro-batch local (row 0 = token from). */
    private void gqa(int layer, LayerWeights.Gqa a, KvCache[] caches, int[] pos, int from, int n, float[] xn, float[] out,
                     Workspace ws) {
        int hd = cfg.headDim();
        int qDim = cfg.heads() * hd;
        int kvDim = cfg.kvHeads() * hd;
        float[] q = ws.q = Workspace.floats(ws.q, n * qDim);
        float[] k = ws.k = Workspace.floats(ws.k, n * kvDim);
        float[] v = ws.v = Workspace.floats(ws.v, n * kvDim);
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
            clamp(q, n * qDim, cfg.clipQkv());
            clamp(k, n * kvDim, cfg.clipQkv());
            clamp(v, n * kvDim, cfg.clipQkv());
        }
        for (int i = 0; i < n; i++) {
            int p = pos[from + i];
            KvCache c = caches[from + i];
            Kernels.rope(q, i * qDim, cfg.heads(), hd, hd, rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
            Kernels.rope(k, i * kvDim, cfg.kvHeads(), hd, hd, rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
            int row = c.row(p);
            storeKey(c, layer, row * kvDim, k, i * kvDim, kvDim);
            storeValue(c, layer, row * kvDim, v, i * kvDim, kvDim);
        }
        float[] attn = ws.attn = Workspace.floats(ws.attn, n * qDim);
        attend(layer, caches, pos, from, n, cfg.kvHeads(), hd, hd, q, qDim, attn, ws, a.sinks());
        Kernels.matmul(attn, 0, n, a.o(), out, 0);
        if (a.oBias() != null) {
            addBias(out, n, a.oBias());
        }
    }

    private void mla(int layer, LayerWeights.Mla a, KvCache[] caches, int[] pos, int from, int n, float[] xn, float[] out,
                     Workspace ws) {
        ModelConfig.Mla m = cfg.mla();
        int heads = cfg.heads();
        int qkHead = m.qkHeadDim();
        int qDim = heads * qkHead;
        float[] q = ws.q = Workspace.floats(ws.q, n * qDim);
        if (a.qA() != null) {
            float[] qa = ws.qa = Workspace.floats(ws.qa, n * m.qLoraRank());
            Kernels.matmul(xn, 0, n, a.qA(), qa, 0);
            Kernels.rmsnorm(qa, 0, n, m.qLoraRank(), a.qANorm(), cfg.rmsEps(), qa, 0);
            Kernels.matmul(qa, 0, n, a.qB(), q, 0);
        } else {
            Kernels.matmul(xn, 0, n, a.q(), q, 0);
        }
        int kvaDim = m.kvLoraRank() + m.qkRopeDim();
        float[] kva = ws.kva = Workspace.floats(ws.kva, n * kvaDim);
        Kernels.matmul(xn, 0, n, a.kvA(), kva, 0);
        float[] latent = ws.latent = Workspace.floats(ws.latent, n * m.kvLoraRank());
        for (int i = 0; i < n; i++) {
            System.arraycopy(kva, i * kvaDim, latent, i * m.kvLoraRank(), m.kvLoraRank());
        }
        Kernels.rmsnorm(latent, 0, n, m.kvLoraRank(), a.kvANorm(), cfg.rmsEps(), latent, 0);
        if (absorbed[layer] != null) {
            mlaCompressed(layer, absorbed[layer], a, caches, pos, from, n, q, kva, latent, out, ws);
            return;
        }
        int kvbDim = heads * (m.qkNopeDim() + m.vHeadDim());
        float[] kv = ws.kv = Workspace.floats(ws.kv, n * kvbDim);
        Kernels.matmul(latent, 0, n, a.kvB(), kv, 0);
        int keyStride = heads * qkHead;
        int valueStride = heads * m.vHeadDim();
        for (int i = 0; i < n; i++) {
            int p = pos[from + i];
            KvCache c = caches[from + i];
            // rope on the last qk_rope dims of each query head, and on the one shared rope key
            for (int hh = 0; hh < heads; hh++) {
                Kernels.rope(q, i * qDim + hh * qkHead + m.qkNopeDim(), 1, m.qkRopeDim(), m.qkRopeDim(),
                        rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
            }
            int pe = i * kvaDim + m.kvLoraRank();
            Kernels.rope(kva, pe, 1, m.qkRopeDim(), m.qkRopeDim(), rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
            int row = c.row(p);
            for (int hh = 0; hh < heads; hh++) {
                int src = i * kvbDim + hh * (m.qkNopeDim() + m.vHeadDim());
                int kd = row * keyStride + hh * qkHead;
                storeKey(c, layer, kd, kv, src, m.qkNopeDim());
                storeKey(c, layer, kd + m.qkNopeDim(), kva, pe, m.qkRopeDim());
                storeValue(c, layer, row * valueStride + hh * m.vHeadDim(), kv, src + m.qkNopeDim(), m.vHeadDim());
            }
        }
        float[] attn = ws.attn = Workspace.floats(ws.attn, n * valueStride);
        attend(layer, caches, pos, from, n, heads, qkHead, m.vHeadDim(), q, qDim, attn, ws, null);
        Kernels.matmul(attn, 0, n, a.o(), out, 0);
    }

    /**
     * MLA over the compressed cache (see {@link MlaAbsorbed}): each token's cache row is its
     * normalised latent and its rotated rope key; each query head becomes
     * {@code [W_UK,h^T q_nope,h, q_pe,h]}, attends over the rows as one shared key/value head
     * (the values being the latents), and its latent output goes through W_UV,h.
     */
    private void mlaCompressed(int layer, MlaAbsorbed ab, LayerWeights.Mla a, KvCache[] caches, int[] pos, int from, int n,
                               float[] q, float[] kva, float[] latent, float[] out, Workspace ws) {
        ModelConfig.Mla m = cfg.mla();
        int heads = cfg.heads();
        int nope = m.qkNopeDim();
        int rd = m.qkRopeDim();
        int r = m.kvLoraRank();
        int qkHead = nope + rd;
        int qDim = heads * qkHead;
        int width = r + rd;
        float[] qAbs = ws.qAbs = Workspace.floats(ws.qAbs, n * heads * width);
        float[] gin = ws.gatherIn = Workspace.floats(ws.gatherIn, n * Math.max(nope, r));
        float[] gout = ws.gatherOut = Workspace.floats(ws.gatherOut, n * Math.max(r, m.vHeadDim()));
        for (int i = 0; i < n; i++) {
            int p = pos[from + i];
            KvCache c = caches[from + i];
            for (int hh = 0; hh < heads; hh++) {
                int qo = i * qDim + hh * qkHead;
                Kernels.rope(q, qo + nope, 1, rd, rd, rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
                System.arraycopy(q, qo + nope, qAbs, (i * heads + hh) * width + r, rd);
            }
            int pe = i * width + r;
            Kernels.rope(kva, pe, 1, rd, rd, rope.cos(), rope.sin(), rope.offset(p), cfg.ropeStyle());
            int row = c.row(p) * width;
            storeKey(c, layer, row, latent, i * r, r);
            storeKey(c, layer, row + r, kva, pe, rd);
        }
        for (int hh = 0; hh < heads; hh++) {
            for (int i = 0; i < n; i++) {
                System.arraycopy(q, i * qDim + hh * qkHead, gin, i * nope, nope);
            }
            Kernels.matmul(gin, 0, n, ab.keyUpT()[hh], gout, 0);
            for (int i = 0; i < n; i++) {
                System.arraycopy(gout, i * r, qAbs, (i * heads + hh) * width, r);
            }
        }
        float[] attnLat = ws.attn = Workspace.floats(ws.attn, n * heads * Math.max(r, m.vHeadDim()));
        attend(layer, caches, pos, from, n, 1, width, r, qAbs, heads * width, attnLat, ws, null);
        int vDim = heads * m.vHeadDim();
        float[] attn = ws.kv = Workspace.floats(ws.kv, n * vDim);
        for (int hh = 0; hh < heads; hh++) {
            for (int i = 0; i < n; i++) {
                System.arraycopy(attnLat, (i * heads + hh) * r, gin, i * r, r);
            }
            Kernels.matmul(gin, 0, n, ab.valueUp()[hh], gout, 0);
            for (int i = 0; i < n; i++) {
                System.arraycopy(gout, i * m.vHeadDim(), attn, i * vDim + hh * m.vHeadDim(), m.vHeadDim());
            }
        }
        Kernels.matmul(attn, 0, n, a.o(), out, 0);
    }

    /** Writes n floats of keys into the cache at element {@code dst} of layer's keys, in the cache's element type. */
    private static void storeKey(KvCache c, int layer, int dst, float[] src, int off, int n) {
        if (c.dtype() == KvDtype.BF16) {
            Bf16.store(src, off, c.keysBf16(layer), dst, n);
        } else {
            System.arraycopy(src, off, c.keys(layer), dst, n);
        }
    }

    private static void storeValue(KvCache c, int layer, int dst, float[] src, int off, int n) {
        if (c.dtype() == KvDtype.BF16) {
            Bf16.store(src, off, c.valuesBf16(layer), dst, n);
        } else {
            System.arraycopy(src, off, c.values(layer), dst, n);
        }
    }

    /**
     * Causal attention of each token over its own sequence's cached positions up to its own (and
     * within the layer's sliding window); {@code sinks} null or one logit per head.
     */
    private void attend(int layer, KvCache[] caches, int[] pos, int from, int n, int kvHeads, int hdK, int hdV,
                        float[] q, int qStride, float[] out, Workspace ws, float[] sinks) {
        int heads = cfg.heads();
        int window = cfg.window(layer);
        for (int i = 0; i < n; i++) {
            int p = pos[from + i];
            KvCache c = caches[from + i];
            int first = window > 0 ? Math.max(0, p - window + 1) : 0;
            int nKeys = p + 1 - first;
            int ks = c.keyStride();
            int vs = c.valueStride();
            boolean f32 = c.dtype() == KvDtype.F32;
            if (f32 && sinks == null && c.contiguous()) {
                float[] scores = ws.scores = Workspace.growing(ws.scores, nKeys);
                Kernels.attention(q, i * qStride, c.keys(layer), first * ks, c.values(layer), first * vs, ks, vs,
                        nKeys, heads, kvHeads, hdK, hdV, attentionScale, out, i * heads * hdV, scores);
                continue;
            }
            int[] rows = ws.rows = Workspace.growing(ws.rows, nKeys);
            for (int t = 0; t < nKeys; t++) {
                rows[t] = c.row(first + t);
            }
            if (f32 && sinks == null) {
                float[] scores = ws.scores = Workspace.growing(ws.scores, nKeys);
                Kernels.attentionRows(q, i * qStride, c.keys(layer), c.values(layer), rows, ks, vs, nKeys, heads, kvHeads,
                        hdK, hdV, attentionScale, out, i * heads * hdV, scores);
            } else if (f32) {
                RowAttention.attend(q, i * qStride, c.keys(layer), c.values(layer), rows, ks, vs, nKeys, heads, kvHeads,
                        hdK, hdV, attentionScale, sinks, out, i * heads * hdV);
            } else {
                RowAttention.attend(q, i * qStride, c.keysBf16(layer), c.valuesBf16(layer), rows, ks, vs, nKeys, heads, kvHeads,
                        hdK, hdV, attentionScale, sinks, out, i * heads * hdV);
            }
        }
    }

    private static void addBias(float[] x, int n, float[] bias) {
        int d = bias.length;
        for (int i = 0; i < n; i++) {
            Kernels.axpy(1f, bias, 0, x, i * d, d);
        }
    }

    private static void clamp(float[] x, int n, float c) {
        for (int i = 0; i < n; i++) {
            x[i] = Math.max(-c, Math.min(c, x[i]));
        }
    }
}
