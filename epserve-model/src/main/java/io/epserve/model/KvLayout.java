package io.epserve.model;

/**
 * The shape of one token's cache entry per layer, as a model and {@link KvOptions} make it:
 * {@code keyStride} elements of keys and {@code valueStride} of values per row, in {@code dtype}.
 * With {@code sharedRows} (compressed MLA) there is one row per token, the latent followed by
 * the rope key, and the values are read from the same row (its first kv_lora_rank elements).
 */
public record KvLayout(int layers, int keyStride, int valueStride, KvDtype dtype, boolean sharedRows) {

    public KvLayout {
        if (layers < 1 || keyStride < 1 || valueStride < 1) {
            throw new IllegalArgumentException("a KV layout needs layers and strides >= 1, got " + layers + ", " + keyStride + ", "
                    + valueStride);
        }
    }

    public static KvLayout of(ModelConfig cfg, KvOptions options) {
        if (cfg.attention() instanceof AttentionConfig.Mla m && options.mla() == KvOptions.MlaCache.COMPRESSED) {
            return new KvLayout(cfg.layers(), m.latentWidth(), m.latentWidth(), options.dtype(), true);
        }
        return new KvLayout(cfg.layers(), cfg.cachedKvHeads() * cfg.keyHeadDim(), cfg.cachedKvHeads() * cfg.valueHeadDim(),
                options.dtype(), false);
    }

    /** Elements stored per token and layer. */
    public long elementsPerToken() {
        return sharedRows ? keyStride : (long) keyStride + valueStride;
    }

    /** Bytes one token takes in the cache, all layers. */
    public long bytesPerToken() {
        return elementsPerToken() * layers * dtype.bytes();
    }
}
