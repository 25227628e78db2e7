package io.epserve.server;

import io.epserve.moe.ExpertPlacement;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The shape the metrics and the live view draw: layers, experts per sparse layer, and which
 * worker runs each expert (its primary replica), so that routed tokens can be summed per worker.
 *
 * @param owner [layer][expert] → worker index; empty rows for dense layers
 */
public record ExpertLayout(int layers, boolean[] sparse, int experts, List<String> workers, int[][] owner) {
    public ExpertLayout {
        sparse = sparse.clone();
        workers = List.copyOf(workers);
        if (owner.length != layers || sparse.length != layers) {
            throw new IllegalArgumentException("layout of " + layers + " layers with " + owner.length + " owner rows");
        }
    }

    public static ExpertLayout of(ExpertPlacement p) {
        boolean[] sparse = new boolean[p.layers()];
        int[][] owner = new int[p.layers()][];
        for (int l = 0; l < p.layers(); l++) {
            sparse[l] = p.isSparse(l);
            owner[l] = new int[sparse[l] ? p.numExperts() : 0];
            for (int e = 0; e < owner[l].length; e++) {
                owner[l][e] = p.primary(l, e);
            }
        }
        return new ExpertLayout(p.layers(), sparse, p.numExperts(), p.workers(), owner);
    }

    /** Indices of the sparse layers, ascending. */
    public int[] sparseLayers() {
        return IntStream.range(0, layers).filter(l -> sparse[l]).toArray();
    }
}
