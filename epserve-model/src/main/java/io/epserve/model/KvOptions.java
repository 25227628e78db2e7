package io.epserve.model;

import java.util.Objects;

/**
 * How the KV cache stores a model's keys and values, chosen once per transformer.
 *
 * @param dtype element type ({@link KvDtype#F32} by default)
 * @param mla   for MLA models: cache the compressed latent (the default; DeepSeek's inference
 *              layout) or the expanded per-head keys and values
 */
public record KvOptions(KvDtype dtype, MlaCache mla) {

    /** What an MLA model caches per token and layer. */
    public enum MlaCache {
        /** kv_lora_rank latent + qk_rope_head_dim rope key; attention absorbs kv_b_proj into query and output. */
        COMPRESSED,
        /** Per-head keys (qk_nope + qk_rope) and values (v_head_dim), as the checkpoint's attention computes them. */
        EXPANDED
    }

    public KvOptions {
        Objects.requireNonNull(dtype, "dtype");
        Objects.requireNonNull(mla, "mla");
    }

    public static KvOptions defaults() {
        return new KvOptions(KvDtype.F32, MlaCache.COMPRESSED);
    }

    public KvOptions withDtype(KvDtype d) {
        return new KvOptions(d, mla);
    }

    public KvOptions withMla(MlaCache m) {
        return new KvOptions(dtype, m);
    }
}
