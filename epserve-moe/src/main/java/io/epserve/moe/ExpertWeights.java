package io.epserve.moe;

import io.epserve.tensor.Tensor;

/**
 * One SwiGLU feed-forward block: {@code down · (silu(gate · x) ⊙ (up · x))}. gate and up are
 * {@code [I, H]}, down is {@code [H, I]}; all three are views of the checkpoint (for stacked
 * expert tensors, row slices of {@code gate_up_proj[e]}).
 */
public record ExpertWeights(Tensor gate, Tensor up, Tensor down) {
    public ExpertWeights {
        if (gate.rows() != up.rows() || gate.cols() != up.cols() || down.cols() != gate.rows() || down.rows() != gate.cols()) {
            throw new IllegalArgumentException("inconsistent SwiGLU shapes: gate " + gate + ", up " + up + ", down " + down);
        }
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
