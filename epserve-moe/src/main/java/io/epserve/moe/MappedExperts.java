package io.epserve.moe;

/**
 * A set of routed experts an {@link ExpertSource} mapped for one holder: exactly those asked
 * for. {@link #expert} refuses every other, so a bug upstream cannot silently map more of the
 * model. Closing it unmaps them.
 */
public interface MappedExperts extends ExpertStore, AutoCloseable {
    /** Whether this set holds expert {@code expert} of layer {@code layer}. */
    boolean holds(int layer, int expert);

    /** Bytes mapped for these experts. */
    long mappedBytes();

    /** Whether they come from a copy converted into another dtype (the model's converted-experts cache), not the model's own tensors. */
    boolean fromConvertedCache();

    @Override
    void close();
}
