package io.epserve.moe;

import java.util.Arrays;

/**
 * Routed tokens per (layer, expert): what a placement policy balances. Indexed by model layer
 * (0-based); a dense layer has no row. The JSON shape of {@code GET /v1/epserve/load} and of the
 * load files {@code epserve plan --load} reads is
 * <pre>
 *   {"steps": S, "layers": [{"layer": 0, "tokens": [n_0, …, n_{E-1}]}, …]}
 * </pre>
 * {@code steps}, optional, is how many steps the counts cover (0 or absent: unknown); a cost that
 * has a fixed part per expert and step ({@link ExpertCost}) needs it to set that part against the
 * counts. A value: the arrays are copied in and out.
 */
public final class ExpertLoad {
    private final int numExperts;
    /** [layer] -> tokens per expert; null for dense layers. */
    private final long[][] tokens;
    /** Steps the counts cover; 0 when unknown. */
    private final long steps;

    private ExpertLoad(int numExperts, long[][] tokens, long steps) {
        this.numExperts = numExperts;
        this.tokens = tokens;
        this.steps = steps;
    }

    /**
     * @param tokens [layer] -> routed tokens per expert ({@code numExperts} long, none negative), or
     *               null for a layer without routed experts
     */
    public static ExpertLoad of(int numExperts, long[][] tokens) {
        return of(numExperts, tokens, 0);
    }

    /**
     * As {@link #of(int, long[][])}, counted over {@code steps} steps (0: unknown).
     */
    public static ExpertLoad of(int numExperts, long[][] tokens, long steps) {
        if (steps < 0) {
            throw new IllegalArgumentException("an expert load covers 0 (unknown) or more steps, got " + steps);
        }
        if (numExperts < 1) {
            throw new IllegalArgumentException("an expert load needs at least one expert per layer, got " + numExperts);
        }
        long[][] copy = new long[tokens.length][];
        for (int l = 0; l < tokens.length; l++) {
            if (tokens[l] == null) {
                continue;
            }
            if (tokens[l].length != numExperts) {
                throw new IllegalArgumentException("layer " + l + " has " + tokens[l].length + " expert counts, the model has "
                        + numExperts + " experts");
            }
            for (int e = 0; e < numExperts; e++) {
                if (tokens[l][e] < 0) {
                    throw new IllegalArgumentException("layer " + l + ", expert " + e + ": negative token count " + tokens[l][e]);
                }
            }
            copy[l] = tokens[l].clone();
        }
        return new ExpertLoad(numExperts, copy, steps);
    }

    /** One token per expert of every sparse layer: no preference (what an absent layer counts as). */
    public static ExpertLoad uniform(boolean[] sparseLayers, int numExperts) {
        long[][] t = new long[sparseLayers.length][];
        for (int l = 0; l < t.length; l++) {
            if (sparseLayers[l]) {
                t[l] = new long[numExperts];
                Arrays.fill(t[l], 1);
            }
        }
        return of(numExperts, t);
    }

    /** Zero tokens everywhere. */
    public static ExpertLoad zero(boolean[] sparseLayers, int numExperts) {
        long[][] t = new long[sparseLayers.length][];
        for (int l = 0; l < t.length; l++) {
            t[l] = sparseLayers[l] ? new long[numExperts] : null;
        }
        return of(numExperts, t);
    }

    public int numExperts() {
        return numExperts;
    }

    /** How many steps the counts cover; 0 when unknown. */
    public long steps() {
        return steps;
    }

    /** Model layers (dense ones included). */
    public int layers() {
        return tokens.length;
    }

    /** Whether the layer has a row (routed experts). */
    public boolean has(int layer) {
        return layer >= 0 && layer < tokens.length && tokens[layer] != null;
    }

    public long tokens(int layer, int expert) {
        return tokens[layer][expert];
    }

    /** A copy of one layer's counts. */
    public long[] layer(int layer) {
        if (!has(layer)) {
            throw new IllegalArgumentException("layer " + layer + " has no routed experts");
        }
        return tokens[layer].clone();
    }

    /** All routed tokens of one layer. */
    public long total(int layer) {
        long s = 0;
        for (long n : tokens[layer]) {
            s += n;
        }
        return s;
    }

    /** Which layers have rows. */
    public boolean[] sparseLayers() {
        boolean[] s = new boolean[tokens.length];
        for (int l = 0; l < s.length; l++) {
            s[l] = tokens[l] != null;
        }
        return s;
    }

    /**
     * This load for a model with the given sparse layers: a sparse layer it has no row for (or no
     * tokens in) counts as uniform; rows of layers the model does not route are refused.
     */
    public ExpertLoad forModel(boolean[] sparseLayers, int experts) {
        if (experts != numExperts) {
            throw new IllegalArgumentException("the load has " + numExperts + " experts per layer, the model " + experts);
        }
        long[][] t = new long[sparseLayers.length][];
        for (int l = 0; l < Math.max(sparseLayers.length, tokens.length); l++) {
            boolean sparse = l < sparseLayers.length && sparseLayers[l];
            if (has(l) && !sparse) {
                throw new IllegalArgumentException("the load has layer " + l + ", which is not a sparse layer of the model");
            }
            if (sparse) {
                if (has(l) && total(l) > 0) {
                    t[l] = tokens[l].clone();
                } else {
                    t[l] = new long[experts];
                    Arrays.fill(t[l], 1);
                }
            }
        }
        return of(experts, t, steps);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ExpertLoad x && x.numExperts == numExperts && x.steps == steps && Arrays.deepEquals(x.tokens, tokens);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * numExperts + Long.hashCode(steps)) + Arrays.deepHashCode(tokens);
    }

    @Override
    public String toString() {
        return "ExpertLoad" + (steps > 0 ? "(" + steps + " steps)" : "") + Arrays.deepToString(tokens);
    }
}
