package io.epserve.moe;

/** Where the routed experts' weights come from: the checkpoint, a worker's share of it. */
public interface ExpertStore {
    /** The weights of expert {@code expert} of layer {@code layer}; throws if this store does not hold it. */
    ExpertWeights expert(int layer, int expert);
}
