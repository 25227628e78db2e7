package io.epserve.moe;

/**
 * Routing by token id alone: expert = hash(token id, seed, slot) mod E, k distinct experts per
 * token, each weighted 1/k (Roller et al., "Hash Layers For Large Sparse Models", 2021). It needs
 * no gate, balances load by construction and is the baseline against which learned routing is
 * measured. Selected with {@code --router hash}; a model trained with a learned router will
 * produce worse text under it — it is an experiment, not a serving mode.
 */
public record HashRouter(int numExperts, int k, long seed) implements Router {
    public static final long DEFAULT_SEED = 0x5EEDL;

    public HashRouter {
        if (k < 1 || k > numExperts) {
            throw new IllegalArgumentException("top-k " + k + " must be in [1, " + numExperts + "]");
        }
    }

    @Override
    public boolean needsLogits() {
        return false;
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens) {
        return route(logits, tokenIds, tokens, new RoutingBuffers());
    }

    @Override
    public RoutingResult route(float[] logits, int[] tokenIds, int tokens, RoutingBuffers into) {
        int[] experts = into.experts(tokens * k);
        float[] weights = into.weights(tokens * k);
        for (int t = 0; t < tokens; t++) {
            long h = mix(seed ^ (tokenIds[t] * 0x9E3779B97F4A7C15L));
            int chosen = 0;
            while (chosen < k) {
                int e = (int) Long.remainderUnsigned(h, numExperts);
                boolean dup = false;
                for (int j = 0; j < chosen; j++) {
                    dup |= experts[t * k + j] == e;
                }
                if (!dup) {
                    experts[t * k + chosen] = e;
                    weights[t * k + chosen] = 1f / k;
                    chosen++;
                }
                h = mix(h + 0x9E3779B97F4A7C15L);
            }
        }
        return into.result(tokens, k);
    }

    /** SplitMix64's finaliser: a good 64-bit mix. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }
}
