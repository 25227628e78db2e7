package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.offset;

import java.lang.foreign.Arena;
import java.util.SplittableRandom;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Grouped products ({@link MatmulGroup}): every output bitwise what its product gives alone (the
 * decode path's q/k/v and expert projections rely on it for batch invariance and the goldens),
 * whatever the group, the pool and the offsets; the scalar twin runs each product in turn.
 */
class MatmulGroupTest {

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

    /** One product of a test group: its weight, its m, where x and y lie. */
    private record Product(Tensor w, int m, float[] x, int xOff, int yOff) {}

    @Test
    void eachOutputBitwiseAsItsProductAlone() {
        SplittableRandom r = new SplittableRandom(21);
        DType[] dts = {DType.BF16, DType.F32, DType.F16, DType.Q8_0};
        int[][] shapes = {{256, 64}, {33, 100}, {64, 96}, {1, 32}, {700, 64}, {96, 128}, {5, 33}, {130, 256}, {17, 64}};
        int[] ms = {1, 1, 2, 3, 1, 5, 9, 1, 30};
        try (Arena arena = Arena.ofShared()) {
            for (KernelPool p : new KernelPool[] {pool1, pool2, pool3}) {
                for (int size : new int[] {1, 3, 9}) {
                    Product[] ps = new Product[size];
                    float[] shared = TestTensors.gaussian(r, 30 * 256 + 7, 1f);
                    int yTotal = 3;
                    for (int j = 0; j < size; j++) {
                        int[] s = shapes[(j + size) % shapes.length];
                        DType dt = dts[j % dts.length];
                        int k = dt == DType.Q8_0 ? s[1] / 32 * 32 : s[1];
                        Tensor w = dt == DType.Q8_0 ? QuantizedMatmulTest.quantized(arena, r, dt, s[0], k, 0.05f)
                                : TestTensors.weight(arena, r, dt, s[0], k, 0.05f);
                        int m = ms[j % ms.length];
                        // products with an even index share one x (q, k and v read the same normed rows)
                        float[] x = j % 2 == 0 ? shared : TestTensors.gaussian(r, m * k + 2, 1f);
                        int xOff = j % 2 == 0 ? 7 : 2;
                        ps[j] = new Product(w, m, x, xOff, yTotal);
                        yTotal += m * w.rows() + 1;
                    }
                    float[] want = new float[yTotal];
                    for (Product q : ps) {
                        VectorKernels.matmul(q.x(), q.xOff(), q.m(), q.w(), want, q.yOff(), pool1);
                    }
                    float[] got = new float[yTotal];
                    MatmulGroup g = new MatmulGroup();
                    for (Product q : ps) {
                        g.add(q.x(), q.xOff(), q.m(), q.w(), got, q.yOff());
                    }
                    assertThat(g.size()).isEqualTo(size);
                    VectorKernels.matmul(g, p);
                    for (int i = 0; i < yTotal; i++) {
                        if (Float.floatToRawIntBits(got[i]) != Float.floatToRawIntBits(want[i])) {
                            throw new AssertionError("threads=" + p.threads() + " group of " + size + " y[" + i + "]: grouped "
                                    + got[i] + " != alone " + want[i]);
                        }
                    }
                    // a cleared group is reused without its old products
                    float[] again = new float[yTotal];
                    g.clear().add(ps[0].x(), ps[0].xOff(), ps[0].m(), ps[0].w(), again, ps[0].yOff());
                    VectorKernels.matmul(g, p);
                    int n0 = ps[0].m() * ps[0].w().rows();
                    for (int i = 0; i < yTotal; i++) {
                        boolean inFirst = i >= ps[0].yOff() && i < ps[0].yOff() + n0;
                        assertThat(Float.floatToRawIntBits(again[i])).as("y[%d]", i)
                                .isEqualTo(Float.floatToRawIntBits(inFirst ? want[i] : 0f));
                    }
                }
            }
        }
    }

    @Test
    void scalarTwinRunsEachProduct() {
        SplittableRandom r = new SplittableRandom(22);
        try (Arena arena = Arena.ofShared()) {
            Tensor a = TestTensors.weight(arena, r, DType.BF16, 40, 70, 0.05f);
            Tensor b = TestTensors.weight(arena, r, DType.F32, 9, 70, 0.05f);
            float[] x = TestTensors.gaussian(r, 2 * 70, 1f);
            float[] want = new float[2 * 40 + 2 * 9];
            ScalarKernels.matmul(x, 0, 2, a, want, 0);
            ScalarKernels.matmul(x, 0, 2, b, want, 80);
            float[] got = new float[want.length];
            ScalarKernels.matmul(new MatmulGroup().add(x, 0, 2, a, got, 0).add(x, 0, 2, b, got, 80));
            assertThat(got).containsExactly(want);
            // the vector group agrees with the scalar twin within the matmul's tolerance
            float[] vec = new float[want.length];
            Kernels.matmul(new MatmulGroup().add(x, 0, 2, a, vec, 0).add(x, 0, 2, b, vec, 80));
            for (int i = 0; i < want.length; i++) {
                assertThat((double) vec[i]).isCloseTo(want[i], offset(1e-4));
            }
        }
    }

    @Test
    void emptyProductsAndEmptyGroups() {
        float[] y = {9, 9, 9, 9};
        Tensor noCols = Tensor.ofFloats("w0", new float[0], 3, 0);
        Tensor noRows = Tensor.ofFloats("w1", new float[0], 0, 4);
        MatmulGroup g = new MatmulGroup().add(new float[0], 0, 1, noCols, y, 1).add(new float[4], 0, 1, noRows, y, 0)
                .add(new float[0], 0, 0, Tensor.ofFloats("w2", new float[8], 2, 4), y, 0);
        VectorKernels.matmul(g, pool2);
        assertThat(y).containsExactly(9f, 0f, 0f, 0f);
        VectorKernels.matmul(new MatmulGroup(), pool2);
    }

    @Test
    void rejectsShortArraysWhenAdded() {
        Tensor w = Tensor.ofFloats("w", new float[6], 2, 3);
        MatmulGroup g = new MatmulGroup();
        assertThatThrownBy(() -> g.add(new float[5], 0, 2, w, new float[4], 0)).isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> g.add(new float[6], 0, 2, w, new float[3], 0)).isInstanceOf(IndexOutOfBoundsException.class);
        assertThatThrownBy(() -> g.add(new float[6], 0, -1, w, new float[4], 0)).isInstanceOf(IllegalArgumentException.class);
        assertThat(g.size()).isZero();
    }
}
