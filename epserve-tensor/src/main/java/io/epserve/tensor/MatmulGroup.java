package io.epserve.tensor;

import java.util.Arrays;
import java.util.Objects;

/**
 * Independent matrix products {@code y_j = x_j · W_jᵀ} that {@link Kernels#matmul(MatmulGroup)}
 * runs as one parallel call: q, k and v of one attention block (one x, three matrices), or the
 * gate and up projections of every expert a decode step routes to.
 *
 * <p>Why: one token's products are small (a k or v projection of the demo model is 0.5 MB, tens
 * of microseconds), and each parallel call ends in a barrier where one thread waits for the
 * other's last chunk. Products that do not depend on each other share one barrier, and their
 * chunks fill each other's gaps. Each product is computed row by row by the same kernel as
 * {@link Kernels#matmul(float[], int, int, Tensor, float[], int)} with the same m, so every
 * output has the same bits as when run alone.
 *
 * <p>A group is reusable: {@link #clear()} and add again; its arrays grow to the largest group
 * and are kept, so a steady-state step allocates nothing. Not thread-safe.
 */
public final class MatmulGroup {
    float[][] xs = new float[4][];
    int[] xOffs = new int[4];
    int[] ms = new int[4];
    Tensor[] ws = new Tensor[4];
    float[][] ys = new float[4][];
    int[] yOffs = new int[4];
    int size;

    // The chunk table of one run (product, first row, end row), owned by the group so that a run allocates nothing.
    int[] chunkProduct = new int[0];
    int[] chunkFrom = new int[0];
    int[] chunkTo = new int[0];

    /** Forgets every product (and the arrays they name). */
    public MatmulGroup clear() {
        Arrays.fill(xs, 0, size, null);
        Arrays.fill(ys, 0, size, null);
        Arrays.fill(ws, 0, size, null);
        size = 0;
        return this;
    }

    /**
     * Adds {@code y[yOff + i·N + n] = Σ_k x[xOff + i·K + k] · w[n, k]} for m tokens (w is [N, K] in
     * any {@link DType}), with the bounds checks of a single matmul.
     */
    public MatmulGroup add(float[] x, int xOff, int m, Tensor w, float[] y, int yOff) {
        if (m < 0) {
            throw new IllegalArgumentException("m < 0: " + m);
        }
        Objects.checkFromIndexSize(xOff, Math.multiplyExact(m, w.cols()), x.length);
        Objects.checkFromIndexSize(yOff, Math.multiplyExact(m, w.rows()), y.length);
        if (size == ms.length) {
            int cap = 2 * size;
            xs = Arrays.copyOf(xs, cap);
            xOffs = Arrays.copyOf(xOffs, cap);
            ms = Arrays.copyOf(ms, cap);
            ws = Arrays.copyOf(ws, cap);
            ys = Arrays.copyOf(ys, cap);
            yOffs = Arrays.copyOf(yOffs, cap);
        }
        xs[size] = x;
        xOffs[size] = xOff;
        ms[size] = m;
        ws[size] = w;
        ys[size] = y;
        yOffs[size] = yOff;
        size++;
        return this;
    }

    /** Products added since the last {@link #clear()}. */
    public int size() {
        return size;
    }

    /** Room for {@code chunks} entries in the chunk table. */
    void reserveChunks(int chunks) {
        if (chunkProduct.length < chunks) {
            int cap = Math.max(chunks, 2 * chunkProduct.length);
            chunkProduct = new int[cap];
            chunkFrom = new int[cap];
            chunkTo = new int[cap];
        }
    }
}
