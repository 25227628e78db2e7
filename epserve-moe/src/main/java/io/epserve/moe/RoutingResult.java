package io.epserve.moe;

/**
 * What the router decided for a batch of tokens: for token t and slot j < k, expert
 * {@code experts[t*k + j]} with multiplier {@code weights[t*k + j]} (the factor applied to that
 * expert's output in the combine, including any renormalisation and scaling). Computed once per
 * layer per step and only read after (DESIGN.md §3.5).
 */
public record RoutingResult(int tokens, int k, int[] experts, float[] weights) {
    public RoutingResult {
        if (experts.length < tokens * k || weights.length < tokens * k) {
            throw new IllegalArgumentException("routing arrays shorter than tokens * k = " + tokens * k);
        }
    }

    public int expert(int token, int slot) {
        return experts[token * k + slot];
    }

    public float weight(int token, int slot) {
        return weights[token * k + slot];
    }

    /** The chosen experts of one token, in slot order. */
    public int[] expertsOf(int token) {
        int[] r = new int[k];
        System.arraycopy(experts, token * k, r, 0, k);
        return r;
    }

    public float[] weightsOf(int token) {
        float[] r = new float[k];
        System.arraycopy(weights, token * k, r, 0, k);
        return r;
    }
}
