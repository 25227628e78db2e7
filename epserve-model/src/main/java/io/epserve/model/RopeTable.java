package io.epserve.model;

import java.util.Arrays;

/**
 * cos/sin of the rotary embedding per position, computed in double and rounded once, extended on
 * demand. Standard RoPE (Su et al. 2021) with inverse frequencies base^(-2i/d), or YaRN's.
 */
final class RopeTable {
    private final int half;
    private final double[] invFreq;
    private final float scaling;
    private float[] cos = new float[0];
    private float[] sin = new float[0];
    private int positions;

    RopeTable(ModelConfig cfg) {
        int dim = cfg.ropeDim();
        half = dim / 2;
        if (cfg.ropeScaling() != null) {
            invFreq = cfg.ropeScaling().inverseFrequencies(dim, cfg.ropeTheta(), cfg.maxPositions());
            scaling = (float) cfg.ropeScaling().attentionScaling(cfg.maxPositions());
        } else {
            invFreq = new double[half];
            for (int i = 0; i < half; i++) {
                invFreq[i] = 1.0 / Math.pow(cfg.ropeTheta(), (double) (2 * i) / dim);
            }
            scaling = 1f;
        }
    }

    synchronized void ensure(int needed) {
        if (needed <= positions) {
            return;
        }
        int cap = Math.max(needed, Math.max(64, positions * 2));
        float[] c = Arrays.copyOf(cos, cap * half);
        float[] s = Arrays.copyOf(sin, cap * half);
        for (int p = positions; p < cap; p++) {
            for (int i = 0; i < half; i++) {
                double a = p * invFreq[i];
                c[p * half + i] = (float) (Math.cos(a) * scaling);
                s[p * half + i] = (float) (Math.sin(a) * scaling);
            }
        }
        cos = c;
        sin = s;
        positions = cap;
    }

    float[] cos() {
        return cos;
    }

    float[] sin() {
        return sin;
    }

    int offset(int position) {
        return position * half;
    }
}
