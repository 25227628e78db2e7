package io.epserve.moe;

/**
 * What one worker is asked to compute for one MoE layer: the hidden states of the tokens that
 * have at least one expert on that worker, and for each such token the (expert, weight) pairs it
 * must pass through there, in ascending expert id.
 * <pre>
 *   x        [tokens × hidden]            rows of the dispatched tokens
 *   offsets  [tokens + 1]                 pairs of token t are offsets[t] .. offsets[t+1]-1
 *   experts  [pairs]  weights [pairs]     global expert ids (ascending per token) and multipliers
 * </pre>
 * The answer is one weighted partial sum per token: {@code Σ weight · expert(x[t])}. The arrays
 * may be longer than that (buffers reused from step to step, {@link DispatchPlan#reusable}); only
 * the prefix above is the request.
 */
public record ExpertRequest(int layer, int tokens, int hidden, float[] x, int[] offsets, int[] experts, float[] weights) {
    public ExpertRequest {
        if (tokens < 0 || offsets.length < tokens + 1 || x.length < tokens * hidden || experts.length < offsets[tokens]
                || weights.length < offsets[tokens]) {
            throw new IllegalArgumentException("inconsistent expert request: " + tokens + " tokens, " + offsets.length
                    + " offsets, " + experts.length + " experts");
        }
    }

    public int pairs() {
        return offsets[tokens];
    }
}
