package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The quantized matmul kernels of the float-activation scheme ({@link QuantizedActivations#F32}:
 * dot products on Q8_0 / Q4_0 / Q4_K blocks with float activations) against their scalar twin,
 * against the float kernel over the dequantized matrix (bitwise: dequantization is exact), and
 * batch invariance (bitwise, whatever m, tile, thread split, offsets). The int8-activation
 * scheme has its own tests (Int8KernelsTest).
 */
class QuantizedMatmulTest {

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

    /** A rows × cols quantized tensor over a segment starting one byte past alignment. */
    static Tensor quantized(Arena arena, SplittableRandom r, DType dt, int rows, int cols, float scale) {
        float[] v = TestTensors.gaussian(r, rows * cols, scale);
        long bytes = dt.bytesFor((long) rows * cols);
        MemorySegment seg = arena.allocate(bytes + 1, 64).asSlice(1, bytes);
        Quantizer.quantize(Tensor.ofFloats("w", v, rows, cols), dt, seg);
        return new Tensor("w", seg, dt, new long[] {rows, cols});
    }

    /** The same weights as F32, decoded by the scalar definition. */
    static Tensor dequantized(Tensor q) {
        return Tensor.ofFloats("w-f32", q.toFloatArray(), q.rows(), q.cols());
    }

    static int[] colsFor(DType dt) {
        return dt == DType.Q4_K ? new int[] {256, 768, 2304} : new int[] {32, 96, 160, 2336};
    }

    @Test
    void matchesScalarTwinOnOddRowsAndBatches() {
        SplittableRandom r = new SplittableRandom(21);
        int[] ms = {1, 2, 3, 7, 37};
        int[] ns = {1, 3, 5, 17, 33};
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : QuantizerTest.QUANTIZED) {
                for (int k : colsFor(dt)) {
                    for (int n : ns) {
                        Tensor w = quantized(arena, r, dt, n, k, 0.05f);
                        float[] wf = w.toFloatArray();
                        for (int m : ms) {
                            if ((long) m * n * k > 300_000) {
                                continue;
                            }
                            float[] x = TestTensors.gaussian(r, m * k + 5, 1f);
                            float[] want = new float[m * n + 3];
                            float[] got = new float[m * n + 3];
                            ScalarKernels.matmul(x, 5, m, w, want, 3, QuantizedActivations.F32);
                            VectorKernels.matmul(x, 5, m, w, got, 3, pool2, QuantizedActivations.F32);
                            for (int i = 0; i < m; i++) {
                                for (int j = 0; j < n; j++) {
                                    double bound = 0;
                                    for (int c = 0; c < k; c++) {
                                        bound += Math.abs(x[5 + i * k + c] * wf[j * k + c]);
                                    }
                                    int at = 3 + i * n + j;
                                    assertThat((double) Math.abs(got[at] - want[at]))
                                            .as("%s m=%d n=%d k=%d y[%d,%d]", dt, m, n, k, i, j)
                                            .isLessThanOrEqualTo(MatmulTest.REL * bound + 1e-30);
                                }
                            }
                            assertThat(got[0]).isZero();
                            assertThat(got[2]).isZero();
                        }
                    }
                }
            }
        }
    }

    /** Dequantization in registers is exact, so the result is the F32 kernel's over the decoded matrix, bit for bit. */
    @Test
    void bitwiseEqualToFloatKernelOverDequantizedWeights() {
        SplittableRandom r = new SplittableRandom(22);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : QuantizerTest.QUANTIZED) {
                for (int k : colsFor(dt)) {
                    Tensor w = quantized(arena, r, dt, 13, k, 0.05f);
                    Tensor wf = dequantized(w);
                    for (int m : new int[] {1, 2, 5}) {
                        float[] x = TestTensors.gaussian(r, m * k, 1f);
                        float[] a = new float[m * 13];
                        float[] b = new float[m * 13];
                        VectorKernels.matmul(x, 0, m, w, a, 0, pool2, QuantizedActivations.F32);
                        VectorKernels.matmul(x, 0, m, wf, b, 0, pool2);
                        for (int i = 0; i < a.length; i++) {
                            assertThat(Float.floatToRawIntBits(a[i])).as("%s k=%d m=%d y%d: %s vs %s", dt, k, m, i, a[i], b[i])
                                    .isEqualTo(Float.floatToRawIntBits(b[i]));
                        }
                    }
                }
            }
        }
    }

    /**
     * HARD REQUIREMENT (see MatmulTest): each token alone (m = 1, one thread, the decode kernel)
     * equals the same token inside batches of 37, 2, 3 and 5 on 1, 2 and 3 threads, at other
     * offsets. K = 2304 / 2336 crosses the prefill path's 2048-column K blocks.
     */
    @Test
    void batchInvariantBitwise() {
        assertBatchInvariant(new SplittableRandom(23), QuantizerTest.QUANTIZED, QuantizedActivations.F32, pool1, pool1, pool2, pool3);
    }

    /**
     * Each token alone (m = 1 on {@code pool1}, the decode kernel) equals the same token inside
     * batches of 37, 2, 3 and 5 on every pool, at other offsets, under {@code scheme}; and through
     * the facade where {@code scheme} is what this JVM runs for the dtype.
     */
    static void assertBatchInvariant(SplittableRandom r, DType[] dtypes, QuantizedActivations scheme, KernelPool pool1, KernelPool... pools) {
        int m = 37;
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : dtypes) {
                int[][] shapes = dt == DType.Q4_K ? new int[][] {{67, 256}, {9, 2304}, {130, 512}}
                        : new int[][] {{67, 96}, {9, 2336}, {130, 1024}, {3, 32}};
                for (int[] s : shapes) {
                    int n = s[0];
                    int k = s[1];
                    Tensor w = quantized(arena, r, dt, n, k, 0.05f);
                    float[] x = TestTensors.gaussian(r, m * k, 1f);
                    float[] single = new float[m * n];
                    for (int i = 0; i < m; i++) {
                        float[] xi = new float[k + 7];
                        System.arraycopy(x, i * k, xi, 7, k);
                        float[] yi = new float[n + 1];
                        VectorKernels.matmul(xi, 7, 1, w, yi, 1, pool1, scheme);
                        System.arraycopy(yi, 1, single, i * n, n);
                    }
                    for (KernelPool p : pools) {
                        float[] xb = new float[m * k + 2];
                        System.arraycopy(x, 0, xb, 2, m * k);
                        float[] batch = new float[m * n + 5];
                        VectorKernels.matmul(xb, 2, m, w, batch, 5, p, scheme);
                        check(dt, n, k, p, batch, 5, single, 0, m * n);
                        for (int m2 : new int[] {2, 3, 5}) {
                            float[] sub = new float[m2 * n];
                            VectorKernels.matmul(x, 4 * k, m2, w, sub, 0, p, scheme);
                            check(dt, n, k, p, sub, 0, single, 4 * n, m2 * n);
                        }
                    }
                    // the facade takes the same path where this scheme is the JVM's for dt
                    boolean facadeRunsScheme = scheme == QuantizedActivations.INT8
                            ? QuantizedActivations.configured() == QuantizedActivations.INT8
                            : QuantizedActivations.configured() == QuantizedActivations.F32 || !Int8Kernels.handles(dt);
                    if (facadeRunsScheme) {
                        float[] viaFacade = new float[m * n];
                        Kernels.matmul(x, 0, m, w, viaFacade, 0);
                        check(dt, n, k, pools[0], viaFacade, 0, single, 0, m * n);
                    }
                }
            }
        }
    }

    static void check(DType dt, int n, int k, KernelPool p, float[] got, int gOff, float[] want, int wOff, int len) {
        for (int j = 0; j < len; j++) {
            if (Float.floatToRawIntBits(got[gOff + j]) != Float.floatToRawIntBits(want[wOff + j])) {
                throw new AssertionError(dt + " n=" + n + " k=" + k + " threads=" + p.threads() + " token "
                        + (wOff + j) / n + " row " + (wOff + j) % n + ": batch " + got[gOff + j] + " != alone " + want[wOff + j]);
            }
        }
    }
}
