package io.epserve.rpc;

import io.epserve.moe.ExpertSource;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.ExpertWorker;
import io.epserve.moe.MappedExperts;
import io.epserve.moe.MoeShape;
import java.util.Arrays;

/**
 * What one Assign gave a worker: exactly the experts of its placement, mapped by the worker's
 * {@link ExpertSource} (resolved, shape-checked and validated finite; only their tensors are
 * mapped, from the checkpoint or, with an expert dtype such as Q8_0, from the model's
 * converted-experts cache). The share refuses every other expert, so a bug upstream cannot
 * silently map more of the model (DESIGN.md §3.8).
 */
final class WorkerShare implements ExpertStore {
    final long epoch;
    /** The model's expert layers: what Compute requests are checked against. */
    final MoeShape shape;
    /** The mapped experts; shared by the shares {@link #withEpoch} makes, closed once by the last of them. */
    final MappedExperts experts;
    /** [layer] -> held experts ascending (empty for layers without any). */
    final int[][] layers;
    final int expertCount;
    final ExpertWorker worker;

    private WorkerShare(long epoch, MoeShape shape, MappedExperts experts, int[][] layers, String name) {
        this.epoch = epoch;
        this.shape = shape;
        this.experts = experts;
        this.layers = layers;
        this.expertCount = Arrays.stream(layers).mapToInt(l -> l.length).sum();
        this.worker = new ExpertWorker(name, this, shape.numExperts());
    }

    /**
     * Maps exactly the given experts from {@code source}; experts that {@code current} (a share
     * of the same source, or null) holds were validated when it was opened and are not read
     * again: a re-placement reads only the experts a worker gains. {@code wanted[layer]} are
     * global expert ids (null or empty: none of that layer). Throws IllegalArgumentException for
     * a bad layer or expert and CheckpointException for a bad model.
     */
    static WorkerShare open(ExpertSource source, long epoch, int[][] wanted, String name, WorkerShare current) {
        MoeShape shape = source.shape();
        int[][] layers = shape.checkExperts(wanted);
        return new WorkerShare(epoch, shape, source.map(layers, current != null ? current.experts : null), layers, name);
    }

    /** The same share under a new placement epoch (same model, same experts): nothing is re-mapped. */
    WorkerShare withEpoch(long newEpoch, String name) {
        return new WorkerShare(newEpoch, shape, experts, layers, name);
    }

    /** Whether this share holds exactly {@code wanted} (the worker's model never changes). */
    boolean sameExperts(int[][] wanted) {
        for (int l = 0; l < layers.length; l++) {
            int[] ids = l < wanted.length && wanted[l] != null ? wanted[l].clone() : new int[0];
            Arrays.sort(ids);
            if (!Arrays.equals(ids, layers[l])) {
                return false;
            }
        }
        return wanted.length <= layers.length;
    }

    boolean holds(int layer, int expert) {
        return experts.holds(layer, expert);
    }

    @Override
    public ExpertWeights expert(int layer, int expert) {
        if (!holds(layer, expert)) {
            throw new IllegalArgumentException("worker " + worker.name() + " does not hold expert " + expert + " of layer " + layer);
        }
        return experts.expert(layer, expert);
    }

    /** Bytes mapped for the held experts: checkpoint tensors, or the converted cache's. */
    long mappedBytes() {
        return experts.mappedBytes();
    }

    /** Whether the held experts come from the converted-experts cache (not the checkpoint's tensors). */
    boolean fromConvertedCache() {
        return experts.fromConvertedCache();
    }

    /** Experts this share holds that {@code previous} (or null) did not: what an Assign had to map and check. */
    int gainedOver(WorkerShare previous) {
        int n = 0;
        for (int l = 0; l < layers.length; l++) {
            for (int e : layers[l]) {
                if (previous == null || !previous.holds(l, e)) {
                    n++;
                }
            }
        }
        return n;
    }

    void close() {
        experts.close();
    }
}
