package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.util.SplittableRandom;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The vector matmul against its scalar twin, and its batch invariance: a token's output is
 * bitwise the same whatever m, tile, thread split and offsets.
 */
class MatmulTest {

    /** |vector - scalar| <= REL · Σ_k |x_k · w_k|: both sum K rounded products, in different orders. */
    static final double REL = 1e-5;

    static KernelPool pool1;
    static KernelPool pool2;
    static KernelPool pool3;

    @BeforeAll
    static void pools() {
        pool1 = new KernelPool(1);
        pool2 = new KernelPool(2);
        pool3 = new KernelPool(3);
    }

    @AfterAll
    static void closePools() {
        pool1.close();
        pool2.close();
        pool3.close();
    }

    @Test
    void matchesScalarTwinOverDtypesSizesAndBatch() {
        SplittableRandom r = new SplittableRandom(11);
        int[] ms = {1, 2, 3, 4, 7, 37};
        int[] ns = {1, 3, 17, 33, 100};
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : TestTensors.FLOATS) {
                for (int k : TestTensors.ODD) {
                    for (int n : ns) {
                        Tensor w = TestTensors.weight(arena, r, dt, n, k, 0.05f);
                        float[] wf = w.toFloatArray();
                        for (int m : ms) {
                            if ((long) m * n * k > 400_000) {
                                continue;
                            }
                            float[] x = TestTensors.gaussian(r, m * k + 5, 1f);
                            float[] want = new float[m * n + 3];
                            float[] got = new float[m * n + 3];
                            ScalarKernels.matmul(x, 5, m, w, want, 3);
                            VectorKernels.matmul(x, 5, m, w, got, 3, pool2);
                            for (int i = 0; i < m; i++) {
                                for (int j = 0; j < n; j++) {
                                    double bound = 0;
                                    for (int c = 0; c < k; c++) {
                                        bound += Math.abs(x[5 + i * k + c] * wf[j * k + c]);
                                    }
                                    int at = 3 + i * n + j;
                                    assertThat((double) Math.abs(got[at] - want[at]))
                                            .as("%s m=%d n=%d k=%d y[%d,%d]", dt, m, n, k, i, j)
                                            .isLessThanOrEqualTo(REL * bound + 1e-30);
                                }
                            }
                            assertThat(got[0]).isZero();
                            assertThat(got[1]).isZero();
                            assertThat(got[2]).isZero();
                        }
                    }
                }
            }
        }
    }

    /**
     * HARD REQUIREMENT: y[i, n] bitwise independent of m, tile, thread split and offsets. Each row
     * is computed alone (m = 1, single thread, the decode path) and inside a batch of 49 (the
     * staged 4×2 tile path plus its remainders) and sub-batches of 2 to 36 (BF16: few-tokens
     * tiles, groups of 8 with their padding and leftovers, staged) on 1, 2 and 3 threads, with
     * different x/y offsets.
     */
    @Test
    void batchInvariantBitwise() {
        SplittableRandom r = new SplittableRandom(12);
        int m = 49;
        int[][] shapes = {{67, 257}, {133, 100}, {64, 1024}, {9, 31}, {200, 3}};
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : TestTensors.FLOATS) {
                for (int[] s : shapes) {
                    int n = s[0];
                    int k = s[1];
                    Tensor w = TestTensors.weight(arena, r, dt, n, k, 0.05f);
                    float[] x = TestTensors.gaussian(r, m * k, 1f);
                    float[] single = new float[m * n];
                    for (int i = 0; i < m; i++) {
                        float[] xi = new float[k + 7];
                        System.arraycopy(x, i * k, xi, 7, k);
                        float[] yi = new float[n + 1];
                        VectorKernels.matmul(xi, 7, 1, w, yi, 1, pool1);
                        System.arraycopy(yi, 1, single, i * n, n);
                    }
                    for (KernelPool p : new KernelPool[] {pool1, pool2, pool3}) {
                        float[] xb = new float[m * k + 2];
                        System.arraycopy(x, 0, xb, 2, m * k);
                        float[] batch = new float[m * n + 5];
                        VectorKernels.matmul(xb, 2, m, w, batch, 5, p);
                        for (int j = 0; j < m * n; j++) {
                            if (Float.floatToRawIntBits(batch[5 + j]) != Float.floatToRawIntBits(single[j])) {
                                throw new AssertionError(dt + " n=" + n + " k=" + k + " threads=" + p.threads()
                                        + " token " + j / n + " row " + j % n + ": batch " + batch[5 + j]
                                        + " != alone " + single[j]);
                            }
                        }
                        // Sub-batches of other sizes give the same bits too (BF16: 2-4 the few-tokens
                        // path; 5-24 groups of 8, padded or followed by 1-4 tokens; 36 and 49 staged).
                        for (int m2 : new int[] {2, 3, 4, 5, 8, 9, 10, 12, 13, 16, 17, 24, 36}) {
                            float[] sub = new float[m2 * n];
                            VectorKernels.matmul(x, 0, m2, w, sub, 0, p);
                            for (int j = 0; j < m2 * n; j++) {
                                assertThat(Float.floatToRawIntBits(sub[j])).isEqualTo(Float.floatToRawIntBits(single[j]));
                            }
                        }
                        // Decode on several threads: same bits as on one.
                        float[] y1 = new float[n];
                        VectorKernels.matmul(x, 4 * k, 1, w, y1, 0, p);
                        for (int j = 0; j < n; j++) {
                            assertThat(Float.floatToRawIntBits(y1[j])).isEqualTo(Float.floatToRawIntBits(single[4 * n + j]));
                        }
                    }
                }
            }
        }
    }

    @Test
    void facadeUsesTheSameScheme() {
        SplittableRandom r = new SplittableRandom(13);
        int k = 123;
        try (Arena arena = Arena.ofShared()) {
            Tensor w = TestTensors.weight(arena, r, DType.F32, 5, k, 0.1f);
            float[] x = TestTensors.gaussian(r, k, 1f);
            float[] y = new float[5];
            Kernels.matmul(x, 0, 1, w, y, 0);
            float[] row = w.select(2).toFloatArray();
            assertThat(Float.floatToRawIntBits(Kernels.dot(row, 0, x, 0, k))).isEqualTo(Float.floatToRawIntBits(y[2]));
        }
    }

    @Test
    void heapTensorsAndEmptyShapes() {
        float[] wv = {1, 2, 3, 4, 5, 6};
        Tensor w = Tensor.ofFloats("w", wv, 2, 3);
        float[] y = new float[2];
        Kernels.matmul(new float[] {1, 1, 1}, 0, 1, w, y, 0);
        assertThat(y).containsExactly(6f, 15f);
        Kernels.matmul(new float[0], 0, 0, w, new float[0], 0);
        Tensor w0 = Tensor.ofFloats("w0", new float[0], 3, 0);
        float[] y0 = {9, 9, 9};
        Kernels.matmul(new float[0], 0, 1, w0, y0, 0);
        assertThat(y0).containsExactly(0f, 0f, 0f);
    }

    @Test
    void rejectsShortArrays() {
        Tensor w = Tensor.ofFloats("w", new float[6], 2, 3);
        assertThatThrownBy(() -> Kernels.matmul(new float[5], 0, 2, w, new float[4], 0))
                .isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> Kernels.matmul(new float[6], 0, 2, w, new float[3], 0))
                .isInstanceOf(IndexOutOfBoundsException.class);
    }
}
