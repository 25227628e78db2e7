package io.epserve.moe;

import io.epserve.tensor.Tensor;

/**
 * One gated feed-forward block: {@code down · act(gate · x, up · x) + downBias}, with act SwiGLU
 * ({@code silu(g) ⊙ u}) or gpt-oss's clamped variant. gate and up are {@code [I, H]}, down is
 * {@code [H, I]}; all three are views of the checkpoint (for stacked expert tensors, row slices of
 * {@code gate_up_proj[e]}). The biases are null for models without them (all but gpt-oss).
 */
public record ExpertWeights(Tensor gate, Tensor up, Tensor down, float[] gateBias, float[] upBias, float[] downBias,
                            GatedActivation activation) {
    public ExpertWeights {
        if (gate.rows() != up.rows() || gate.cols() != up.cols() || down.cols() != gate.rows() || down.rows() != gate.cols()) {
            throw new IllegalArgumentException("inconsistent SwiGLU shapes: gate " + gate + ", up " + up + ", down " + down);
        }
        if ((gateBias != null && gateBias.length != gate.rows()) || (upBias != null && upBias.length != up.rows())
                || (downBias != null && downBias.length != down.rows())) {
            throw new IllegalArgumentException("expert biases do not match gate " + gate + ", up " + up + ", down " + down);
        }
    }

    /** A plain SwiGLU expert without biases. */
    public ExpertWeights(Tensor gate, Tensor up, Tensor down) {
        this(gate, up, down, null, null, null, GatedActivation.SILU);
    }

    /** Whether any projection carries a bias. */
    public boolean hasBias() {
        return gateBias != null || upBias != null || downBias != null;
    }

    public int hidden() {
        return gate.cols();
    }

    public int intermediate() {
        return gate.rows();
    }

    /** Bytes of the three weight tensors. */
    public long bytes() {
        return gate.data().byteSize() + up.data().byteSize() + down.data().byteSize();
    }
}
