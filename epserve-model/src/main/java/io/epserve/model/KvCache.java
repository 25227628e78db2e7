package io.epserve.model;

/**
 * Where one sequence's keys and values live. Keys are stored after RoPE, so a decode step reads
 * them as they are. Storage is per layer, one row per cached position:
 * <pre>
 *   keys(layer)   = [row][keyStride]       row = row(position)
 *   values(layer) = [row][valueStride]
 * </pre>
 * in float32 ({@link #keys}, {@link #values}) or bfloat16 ({@link #keysBf16}, {@link #valuesBf16}),
 * as {@link #dtype()} says. A compressed MLA cache has one row per position and its values are
 * the keys' rows. A contiguous cache ({@link ContiguousKvCache}) has row = position; a paged cache
 * maps positions to rows of shared blocks.
 */
public interface KvCache {
    /** Positions cached so far; the next token goes to position {@code length()}. */
    int length();

    int keyStride();

    int valueStride();

    /** Element type of the stored keys and values. */
    default KvDtype dtype() {
        return KvDtype.F32;
    }

    /** The float32 keys of a layer (a bfloat16 cache has none). */
    float[] keys(int layer);

    float[] values(int layer);

    /** The bfloat16 keys of a layer (a float32 cache has none). */
    default short[] keysBf16(int layer) {
        throw new UnsupportedOperationException("this KV cache stores float32");
    }

    default short[] valuesBf16(int layer) {
        throw new UnsupportedOperationException("this KV cache stores float32");
    }

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
