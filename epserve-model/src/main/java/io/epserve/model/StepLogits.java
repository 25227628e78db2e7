package io.epserve.model;

import java.util.Arrays;

/**
 * The logits of one step, in a buffer the caller keeps from step to step
 * ({@link MoeTransformer#step(java.util.List, RoutingListener, StepLogits)}), so that a serving
 * loop allocates nothing for them (DESIGN.md §3.4). Each step overwrites it.
 * <pre>
 *   data()  [rows × vocab]           the rows of every chunk that asked for logits, chunk order
 *   chunk c:  rows(c) rows from data()[offset(c)], offset(c) = -1 and rows(c) = 0 for Logits.NONE
 * </pre>
 * The buffer grows to the largest step seen and is never shrunk. Not thread-safe.
 */
public final class StepLogits {
    private float[] data = new float[0];
    private int[] offset = new int[0];
    private int[] rows = new int[0];
    private int chunks;
    private int vocab;

    /** Sizes the buffer for a step of {@code chunks} chunks and {@code totalRows} rows; offsets are set by {@link #set}. */
    void prepare(int chunks, int vocab, int totalRows) {
        if (offset.length < chunks) {
            offset = new int[chunks];
            rows = new int[chunks];
        }
        if (data.length < totalRows * vocab) {
            data = new float[totalRows * vocab];
        }
        this.chunks = chunks;
        this.vocab = vocab;
    }

    void set(int chunk, int offset, int rows) {
        this.offset[chunk] = offset;
        this.rows[chunk] = rows;
    }

    /** The rows of logits, {@code vocabSize()} floats each; longer than this step's rows when an earlier step was larger. */
    public float[] data() {
        return data;
    }

    /** Chunks of the last step. */
    public int chunks() {
        return chunks;
    }

    public int vocabSize() {
        return vocab;
    }

    /** Where chunk c's first row starts in {@link #data()}, or -1 when it asked for no logits. */
    public int offset(int chunk) {
        checkChunk(chunk);
        return offset[chunk];
    }

    /** Rows of chunk c: 0 (NONE), 1 (LAST) or its token count (ALL). */
    public int rows(int chunk) {
        checkChunk(chunk);
        return rows[chunk];
    }

    /** Chunk c's logits as a new array {@code [rows, vocab]}, or null when it asked for none. */
    public float[] copy(int chunk) {
        checkChunk(chunk);
        if (rows[chunk] == 0) {
            return null;
        }
        return Arrays.copyOfRange(data, offset[chunk], offset[chunk] + rows[chunk] * vocab);
    }

    private void checkChunk(int chunk) {
        if (chunk < 0 || chunk >= chunks) {
            throw new IndexOutOfBoundsException("chunk " + chunk + " of a step of " + chunks);
        }
    }
}
