package io.epserve.model;

import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.Tensor;

/** The weights of one decoder layer, as views of the checkpoint. */
public record LayerWeights(Tensor inputNorm, Attention attention, Tensor postAttentionNorm, Ffn ffn) {

    /** Attention variants. */
    public sealed interface Attention permits Gqa, Mla {
        Tensor o();
    }

    /**
     * Grouped-query attention (Mixtral, Qwen, OLMoE, gpt-oss). Biases, q/k norms and sinks are
     * null when the architecture has none; biases are small and kept as floats. {@code sinks}:
     * gpt-oss's per-head logit that joins every softmax's denominator.
     */
    public record Gqa(Tensor q, Tensor k, Tensor v, Tensor o, float[] qBias, float[] kBias, float[] vBias,
                      Tensor qNorm, Tensor kNorm, float[] oBias, float[] sinks) implements Attention {
        /** Without an output bias or sinks. */
        public Gqa(Tensor q, Tensor k, Tensor v, Tensor o, float[] qBias, float[] kBias, float[] vBias, Tensor qNorm, Tensor kNorm) {
            this(q, k, v, o, qBias, kBias, vBias, qNorm, kNorm, null, null);
        }
    }

    /**
     * DeepSeek's multi-head latent attention: q through a low-rank bottleneck (qA, qANorm, qB)
     * or a plain q; k/v through kvA (latent + shared rope key), kvANorm and kvB.
     */
    public record Mla(Tensor qA, Tensor qANorm, Tensor qB, Tensor q, Tensor kvA, Tensor kvANorm, Tensor kvB,
                      Tensor o) implements Attention {}

    /** Feed-forward variants. */
    public sealed interface Ffn permits Dense, Moe {}

    public record Dense(ExpertWeights mlp) implements Ffn {}

    /**
     * A sparse layer: the router's gate {@code [E, H]}, DeepSeek's correction bias (or null), the
     * shared expert (or null), Qwen2-MoE's shared-expert gate {@code [1, H]} (or null) and
     * gpt-oss's router bias added to the logits (or null). The routed experts live in an
     * {@link io.epserve.moe.ExpertStore}.
     */
    public record Moe(Tensor gate, float[] correctionBias, ExpertWeights shared, Tensor sharedGate, float[] gateBias) implements Ffn {
        public Moe(Tensor gate, float[] correctionBias, ExpertWeights shared, Tensor sharedGate) {
            this(gate, correctionBias, shared, sharedGate, null);
        }
    }
}
