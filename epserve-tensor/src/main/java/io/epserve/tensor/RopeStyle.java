package io.epserve.tensor;

/** How rotary embedding pairs the dimensions of a head. */
public enum RopeStyle {
    /** Dim i with dim i + d/2: HF's rotate_half (Llama, Mixtral, Qwen, OLMoE). */
    NEOX,
    /** Dim 2i with dim 2i+1: the original RoPE pairing (DeepSeek's MLA rope part as HF permutes it). */
    INTERLEAVED
}
