package io.epserve.moe;

/** The gated activation between an expert's gate/up projections and its down projection. */
public sealed interface GatedActivation permits GatedActivation.Silu, GatedActivation.ClampedSwiGlu {

    /** SwiGLU: silu(gate) · up. */
    record Silu() implements GatedActivation {}

    /**
     * gpt-oss: gate clamped to at most {@code limit}, up to [−limit, limit], then
     * gate · sigmoid(alpha · gate) · (up + 1).
     */
    record ClampedSwiGlu(float alpha, float limit) implements GatedActivation {}

    GatedActivation SILU = new Silu();
}
