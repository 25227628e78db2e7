package io.epserve.model;

import io.epserve.moe.GatedActivation;
import java.util.Arrays;
import java.util.Objects;

/**
 * The feed-forward half of every layer: which layers are sparse, the dense MLP's width, and the
 * routed and shared experts; one typed part of {@link ModelConfig}.
 *
 * @param denseIntermediate  the dense layers' SwiGLU width (0 when every layer is sparse)
 * @param sparseLayers       which layers route to experts
 * @param experts            routed experts per sparse layer
 * @param moeIntermediate    one routed expert's width
 * @param sharedIntermediate the shared expert's width (0: none)
 * @param sharedExpertGate   Qwen2-MoE's sigmoid gate on the shared expert
 * @param activation         the experts' gated activation
 * @param expertBias         whether the experts' projections carry biases (gpt-oss)
 */
public record FfnConfig(int denseIntermediate, boolean[] sparseLayers, int experts, int moeIntermediate,
                        int sharedIntermediate, boolean sharedExpertGate, GatedActivation activation, boolean expertBias) {

    public FfnConfig {
        sparseLayers = sparseLayers.clone();
    }

    // value semantics for the array component (a record compares arrays by reference)
    @Override
    public boolean equals(Object o) {
        return o instanceof FfnConfig f && denseIntermediate == f.denseIntermediate && Arrays.equals(sparseLayers, f.sparseLayers)
                && experts == f.experts && moeIntermediate == f.moeIntermediate && sharedIntermediate == f.sharedIntermediate
                && sharedExpertGate == f.sharedExpertGate && activation.equals(f.activation) && expertBias == f.expertBias;
    }

    @Override
    public int hashCode() {
        return Objects.hash(denseIntermediate, Arrays.hashCode(sparseLayers), experts, moeIntermediate, sharedIntermediate,
                sharedExpertGate, activation, expertBias);
    }

    public boolean isSparse(int layer) {
        return sparseLayers[layer];
    }
}
