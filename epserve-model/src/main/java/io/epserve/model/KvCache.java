package io.epserve.model;

/**
 * Where one sequence's keys and values live. Keys are stored after RoPE, so a decode step reads
 * them as they are. Storage is per layer, one row per cached position:
 * <pre>
 *   keys(layer)   = [row][kvHeads × keyHeadDim]     row = row(position)
 *   values(layer) = [row][kvHeads × valueHeadDim]
 * </pre>
 * A contiguous cache ({@link ContiguousKvCache}) has row = position; a paged cache maps
 * positions to rows of shared blocks.
 */
public interface KvCache {
    /** Positions cached so far; the next token goes to position {@code length()}. */
    int length();

    int keyStride();

    int valueStride();

    float[] keys(int layer);

    float[] values(int layer);

    /** The row of a position in {@link #keys}/{@link #values}; valid for positions below the reserved capacity. */
    int row(int position);

    /** Whether row(p) == p for every position (the attention kernel then reads keys with a stride). */
    boolean contiguous();

    /** Makes rows available for positions up to {@code positions - 1}. */
    void reserve(int positions);

    /** Marks n more positions as cached (after their keys/values were written). */
    void advance(int n);

    /** Forgets positions from {@code newLength} on. */
    void truncate(int newLength);
}
