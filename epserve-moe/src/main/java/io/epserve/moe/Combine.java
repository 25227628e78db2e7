package io.epserve.moe;

import io.epserve.tensor.Kernels;

/** Adds the experts' outputs of each token back together, weighted by the router. */
public final class Combine {
    private Combine() {}

    /**
     * {@code out[t] = Σ_j weight(t, j) · slotOut[t*k + j]}, slots taken in ascending expert id so
     * that the float sum is the same whatever order the experts ran or arrived in.
     */
    public static void weightedSum(RoutingResult r, float[] slotOut, int h, float[] out) {
        int k = r.k();
        int[] slots = new int[k];
        for (int t = 0; t < r.tokens(); t++) {
            for (int j = 0; j < k; j++) {
                slots[j] = j;
            }
            // insertion sort of the k slots by expert id (k is small)
            for (int a = 1; a < k; a++) {
                int s = slots[a];
                int b = a - 1;
                while (b >= 0 && r.expert(t, slots[b]) > r.expert(t, s)) {
                    slots[b + 1] = slots[b];
                    b--;
                }
                slots[b + 1] = s;
            }
            java.util.Arrays.fill(out, t * h, (t + 1) * h, 0f);
            for (int j = 0; j < k; j++) {
                int s = slots[j];
                Kernels.axpy(r.weight(t, s), slotOut, (t * k + s) * h, out, t * h, h);
            }
        }
    }
}
