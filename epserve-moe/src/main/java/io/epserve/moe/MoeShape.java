package io.epserve.moe;

import java.util.Arrays;
import java.util.Objects;

/**
 * The expert layers of a model as those who dispatch to its routed experts and hold them see it
 * (a remote dispatcher, an expert worker), without the rest of the model: which layers have
 * routed experts, how many, and their sizes. The model's config makes one; a worker checks every
 * request and every Assign against it. A value: the array is copied in and out.
 *
 * @param sparseLayers       per model layer (0-based), whether it has routed experts
 * @param numExperts         routed experts per sparse layer
 * @param hidden             the hidden size: every expert's input and output width
 * @param expertIntermediate a routed expert's intermediate size (what expert shards split)
 */
public record MoeShape(boolean[] sparseLayers, int numExperts, int hidden, int expertIntermediate) {
    public MoeShape {
        Objects.requireNonNull(sparseLayers, "sparseLayers");
        if (numExperts < 0 || hidden < 1 || expertIntermediate < 0) {
            throw new IllegalArgumentException("expert layers of " + numExperts + " experts, hidden " + hidden + ", intermediate "
                    + expertIntermediate);
        }
        sparseLayers = sparseLayers.clone();
    }

    @Override
    public boolean[] sparseLayers() {
        return sparseLayers.clone();
    }

    /** Layers of the model, dense and sparse. */
    public int layers() {
        return sparseLayers.length;
    }

    /** Whether {@code layer} is a layer of the model with routed experts (false outside the model). */
    public boolean isSparse(int layer) {
        return layer >= 0 && layer < sparseLayers.length && sparseLayers[layer];
    }

    /**
     * The experts {@code wanted[layer]} names (global ids; a null or empty row, or a row past the
     * array: none of that layer), checked against this shape and sorted, one row per model layer.
     * Throws IllegalArgumentException naming the layer or expert at fault: a layer outside the
     * model, experts of a dense layer, an id outside [0, numExperts), an id listed twice.
     */
    public int[][] checkExperts(int[][] wanted) {
        if (wanted.length > layers()) {
            throw new IllegalArgumentException("layer " + (wanted.length - 1) + " outside [0, " + layers() + ")");
        }
        int[][] out = new int[layers()][];
        for (int l = 0; l < layers(); l++) {
            int[] ids = l < wanted.length && wanted[l] != null ? wanted[l].clone() : new int[0];
            Arrays.sort(ids);
            if (ids.length > 0 && !sparseLayers[l]) {
                throw new IllegalArgumentException("layer " + l + " has no routed experts");
            }
            for (int i = 0; i < ids.length; i++) {
                if (ids[i] < 0 || ids[i] >= numExperts) {
                    throw new IllegalArgumentException("expert " + ids[i] + " of layer " + l + " outside [0, " + numExperts + ")");
                }
                if (i > 0 && ids[i] == ids[i - 1]) {
                    throw new IllegalArgumentException("expert " + ids[i] + " of layer " + l + " listed twice");
                }
            }
            out[l] = ids;
        }
        return out;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof MoeShape s && Arrays.equals(sparseLayers, s.sparseLayers) && numExperts == s.numExperts
                && hidden == s.hidden && expertIntermediate == s.expertIntermediate;
    }

    @Override
    public int hashCode() {
        return Objects.hash(Arrays.hashCode(sparseLayers), numExperts, hidden, expertIntermediate);
    }

    @Override
    public String toString() {
        return "MoeShape[sparseLayers=" + Arrays.toString(sparseLayers) + ", numExperts=" + numExperts + ", hidden=" + hidden
                + ", expertIntermediate=" + expertIntermediate + "]";
    }
}
