package io.epserve.model;

import java.util.Arrays;
import java.util.Objects;

/**
 * How a model's attention is shaped: grouped-query attention with its per-architecture options,
 * or DeepSeek's multi-head latent attention. One typed part of {@link ModelConfig}.
 */
public sealed interface AttentionConfig permits AttentionConfig.Gqa, AttentionConfig.Mla {

    /** Query heads. */
    int heads();

    /** Key width per head as the uncompressed cache stores it. */
    int keyHeadDim();

    int valueHeadDim();

    /** Key/value heads the uncompressed cache stores per position. */
    int cachedKvHeads();

    /** Rotary dimensions per head. */
    int ropeDim();

    /** The window of {@code layer}'s attention in positions; 0 when it sees the whole sequence. */
    int window(int layer);

    /**
     * Grouped-query attention (Mixtral, Qwen, OLMoE, gpt-oss). {@code layerWindows} holds each
     * layer's sliding window (0: full attention); {@code sinks} adds gpt-oss's learned per-head
     * sink logit to every softmax; {@code oBias} a bias on the output projection.
     */
    record Gqa(int heads, int kvHeads, int headDim, boolean qkvBias, boolean oBias, ModelConfig.QkNorm qkNorm,
               float clipQkv, int[] layerWindows, boolean sinks) implements AttentionConfig {
        public Gqa {
            if (kvHeads < 1 || heads % kvHeads != 0) {
                throw new IllegalArgumentException("num_key_value_heads " + kvHeads + " must divide num_attention_heads " + heads);
            }
            layerWindows = layerWindows.clone();
        }

        @Override
        public int keyHeadDim() {
            return headDim;
        }

        @Override
        public int valueHeadDim() {
            return headDim;
        }

        @Override
        public int cachedKvHeads() {
            return kvHeads;
        }

        @Override
        public int ropeDim() {
            return headDim;
        }

        @Override
        public int window(int layer) {
            return layerWindows[layer];
        }

        @Override
        public int[] layerWindows() {
            return layerWindows.clone();
        }

        // value semantics for the array component (a record compares arrays by reference)
        @Override
        public boolean equals(Object o) {
            return o instanceof Gqa g && heads == g.heads && kvHeads == g.kvHeads && headDim == g.headDim && qkvBias == g.qkvBias
                    && oBias == g.oBias && qkNorm == g.qkNorm && Float.compare(clipQkv, g.clipQkv) == 0
                    && Arrays.equals(layerWindows, g.layerWindows) && sinks == g.sinks;
        }

        @Override
        public int hashCode() {
            return Objects.hash(heads, kvHeads, headDim, qkvBias, oBias, qkNorm, clipQkv, Arrays.hashCode(layerWindows), sinks);
        }

        /** The widest window of any layer (0 when every layer attends to the whole sequence). */
        int maxWindow() {
            int w = 0;
            for (int x : layerWindows) {
                w = Math.max(w, x);
            }
            return w;
        }
    }

    /**
     * Multi-head latent attention: every head's key and value come from one latent of
     * {@code kvLoraRank} per position plus one shared rope key.
     */
    record Mla(int heads, ModelConfig.Mla dims, boolean bias) implements AttentionConfig {
        @Override
        public int keyHeadDim() {
            return dims.qkHeadDim();
        }

        @Override
        public int valueHeadDim() {
            return dims.vHeadDim();
        }

        @Override
        public int cachedKvHeads() {
            return heads;
        }

        @Override
        public int ropeDim() {
            return dims.qkRopeDim();
        }

        @Override
        public int window(int layer) {
            return 0;
        }

        /** Floats per position and layer of the compressed cache: the latent and the rope key. */
        public int latentWidth() {
            return dims.kvLoraRank() + dims.qkRopeDim();
        }
    }
}
