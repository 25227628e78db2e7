package io.epserve.sim;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Per sparse layer, the share of routed (token, expert) pairs each expert receives: what the
 * router does to the load, without the router. From a measured load (the counts of
 * {@code GET /v1/epserve/load}), a Zipf skew, or uniform.
 */
public final class ExpertPopularity {
    private final double[][] share;
    private final String source;

    private ExpertPopularity(double[][] share, String source) {
        this.share = share;
        this.source = source;
    }

    /** Every expert equally likely. */
    public static ExpertPopularity uniform(int layers, int experts) {
        double[][] p = new double[layers][experts];
        for (double[] row : p) {
            Arrays.fill(row, 1.0 / experts);
        }
        return new ExpertPopularity(p, "uniform");
    }

    /**
     * Zipf skew: the expert of rank r (1-based) gets a share ∝ 1/r^s; ranks are a seeded random
     * permutation per layer, so hot experts do not sit together by construction. s = 0 is uniform.
     */
    public static ExpertPopularity zipf(int layers, int experts, double s, long seed) {
        if (!(s >= 0)) {
            throw new IllegalArgumentException("Zipf exponent must be >= 0, got " + s);
        }
        SplittableRandom r = new SplittableRandom(seed);
        double[][] p = new double[layers][experts];
        for (int l = 0; l < layers; l++) {
            int[] perm = new int[experts];
            for (int i = 0; i < experts; i++) {
                perm[i] = i;
            }
            for (int i = experts - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
            }
            double sum = 0;
            for (int rank = 0; rank < experts; rank++) {
                sum += Math.pow(rank + 1, -s);
            }
            for (int rank = 0; rank < experts; rank++) {
                p[l][perm[rank]] = Math.pow(rank + 1, -s) / sum;
            }
        }
        return new ExpertPopularity(p, String.format(Locale.ROOT, "zipf s=%.2f", s));
    }

    /**
     * From the load JSON {@code {"layers":[{"layer":L,"tokens":[n_0..n_{E-1}]}]}}, {@code layer}
     * numbering the model's layers. Layers it lacks take the mean share of the layers it has.
     *
     * @param sparse the model's sparse layers; shares are kept for those only
     */
    public static ExpertPopularity fromLoad(JsonNode json, boolean[] sparse, int experts, String source) {
        JsonNode layers = json.get("layers");
        if (layers == null || !layers.isArray() || layers.isEmpty()) {
            throw new IllegalArgumentException(source + ": expected {\"layers\":[{\"layer\":0,\"tokens\":[...]}]} with at least one layer");
        }
        double[][] p = new double[sparse.length][];
        double[] mean = new double[experts];
        int seen = 0;
        for (JsonNode entry : layers) {
            JsonNode ln = entry.get("layer");
            JsonNode tokens = entry.get("tokens");
            if (ln == null || !ln.canConvertToInt() || tokens == null || !tokens.isArray()) {
                throw new IllegalArgumentException(source + ": each layer entry needs an integer 'layer' and a 'tokens' array, got " + entry);
            }
            int l = ln.asInt();
            if (l < 0 || l >= sparse.length || !sparse[l]) {
                throw new IllegalArgumentException(source + ": layer " + l + " is not a sparse layer of the model (" + sparse.length + " layers)");
            }
            if (tokens.size() != experts) {
                throw new IllegalArgumentException(source + ": layer " + l + " has " + tokens.size() + " token counts, the model has " + experts + " experts");
            }
            double[] row = new double[experts];
            double sum = 0;
            for (int e = 0; e < experts; e++) {
                JsonNode n = tokens.get(e);
                if (!n.isNumber() || n.asDouble() < 0) {
                    throw new IllegalArgumentException(source + ": layer " + l + " expert " + e + ": token count must be a number >= 0, got " + n);
                }
                row[e] = n.asDouble();
                sum += row[e];
            }
            if (sum <= 0) {
                throw new IllegalArgumentException(source + ": layer " + l + " routed no tokens: no shares can be taken from it");
            }
            for (int e = 0; e < experts; e++) {
                row[e] /= sum;
                mean[e] += row[e];
            }
            p[l] = row;
            seen++;
        }
        for (int e = 0; e < experts; e++) {
            mean[e] /= seen;
        }
        for (int l = 0; l < sparse.length; l++) {
            if (sparse[l] && p[l] == null) {
                p[l] = mean.clone();
            }
        }
        return new ExpertPopularity(p, source);
    }

    /** The share of expert e at layer l (sums to 1 over e). */
    public double share(int layer, int expert) {
        return share[layer] == null ? 0 : share[layer][expert];
    }

    public double[] shares(int layer) {
        return share[layer].clone();
    }

    public int experts() {
        return share.length == 0 ? 0 : Arrays.stream(share).filter(r -> r != null).findFirst().map(r -> r.length).orElse(0);
    }

    public String source() {
        return source;
    }

    /** Max share / mean share of a layer: 1 is uniform. */
    public double skew(int layer) {
        double max = 0;
        for (double v : share[layer]) {
            max = Math.max(max, v);
        }
        return max * share[layer].length;
    }
}
