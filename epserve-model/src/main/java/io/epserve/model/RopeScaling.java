package io.epserve.model;

/**
 * YaRN rotary scaling (Peng et al. 2023), as HF transformers computes it for DeepSeek-V3
 * ({@code _compute_yarn_parameters}): blended inverse frequencies and an attention factor that
 * scales cos/sin; DeepSeek additionally scales the softmax by mscale(factor, mscale_all_dim)².
 */
public record RopeScaling(double factor, int originalMaxPositions, double betaFast, double betaSlow,
                          double mscale, double mscaleAllDim, Double attentionFactor, boolean truncate) {

    static double yarnMscale(double scale, double mscale) {
        return scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0;
    }

    /** cos/sin multiplier. {@code maxPositions} is config.max_position_embeddings. */
    double attentionScaling(int maxPositions) {
        if (attentionFactor != null) {
            return attentionFactor;
        }
        double f = effectiveFactor(maxPositions);
        if (mscale != 0 && mscaleAllDim != 0) {
            return yarnMscale(f, mscale) / yarnMscale(f, mscaleAllDim);
        }
        return yarnMscale(f, 1.0);
    }

    /**
     * The scaling factor as configured. (HF 4.5x replaced it by max_position_embeddings /
     * original_max_position_embeddings; HF 5 and DeepSeek's own inference code use {@code factor}
     * as given. The two agree for DeepSeek-V3: 163840 / 4096 = 40.)
     */
    double effectiveFactor(int maxPositions) {
        return factor;
    }

    /** Inverse frequencies for a rotary dimension {@code dim}. */
    double[] inverseFrequencies(int dim, double base, int maxPositions) {
        double f = effectiveFactor(maxPositions);
        int origMax = originalMaxPositions > 0 ? originalMaxPositions : maxPositions;
        double low = correctionDim(betaFast, dim, base, origMax);
        double high = correctionDim(betaSlow, dim, base, origMax);
        if (truncate) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, dim - 1);
        if (low == high) {
            high += 0.001;
        }
        double[] inv = new double[dim / 2];
        for (int i = 0; i < dim / 2; i++) {
            // float32 as the reference computes these
            float posFreq = (float) Math.pow(base, (float) (2 * i) / dim);
            double extrapolation = 1.0 / posFreq;
            double interpolation = 1.0 / (f * posFreq);
            double ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
            double extrapolationFactor = 1 - ramp;
            inv[i] = interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return inv;
    }

    private static double correctionDim(double rotations, int dim, double base, int maxPositions) {
        return dim * Math.log(maxPositions / (rotations * 2 * Math.PI)) / (2 * Math.log(base));
    }
}
