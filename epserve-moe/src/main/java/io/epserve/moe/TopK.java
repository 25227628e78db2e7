package io.epserve.moe;

/** Top-k selection for small k: largest values first, ties to the lower index. */
final class TopK {
    private TopK() {}

    /** Writes the indices (relative to off) of the k largest of values[off, off+n) to out[outOff...]. */
    static void select(float[] values, int off, int n, int k, int[] out, int outOff) {
        for (int j = 0; j < k; j++) {
            int best = -1;
            float bestV = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < n; i++) {
                float v = values[off + i];
                if (best >= 0 && !(v > bestV)) {
                    continue;
                }
                boolean taken = false;
                for (int p = 0; p < j; p++) {
                    if (out[outOff + p] == i) {
                        taken = true;
                        break;
                    }
                }
                if (!taken && (best < 0 || v > bestV)) {
                    best = i;
                    bestV = v;
                }
            }
            out[outOff + j] = best;
        }
    }
}
