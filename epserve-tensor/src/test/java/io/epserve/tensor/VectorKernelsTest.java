package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every non-matmul vector kernel against its scalar twin over odd sizes (and dtypes where a
 * weight is involved). Tolerances are stated per kernel; where the vector kernel performs the
 * same operations in the same order the test demands equal bits.
 */
class VectorKernelsTest {

    static KernelPool pool2;

    @BeforeAll
    static void pools() {
        pool2 = new KernelPool(2);
    }

    @AfterAll
    static void closePools() {
        pool2.close();
    }

    static void assertClose(float[] got, float[] want, double rel, double abs, String what) {
        assertThat(got.length).isEqualTo(want.length);
        for (int i = 0; i < got.length; i++) {
            double tol = rel * Math.abs(want[i]) + abs;
            if (!(Math.abs(got[i] - want[i]) <= tol) && !(Float.isNaN(got[i]) && Float.isNaN(want[i]))
                    && got[i] != want[i]) {
                throw new AssertionError(what + " [" + i + "]: got " + got[i] + ", want " + want[i] + " (tol " + tol + ")");
            }
        }
    }

    static void assertBitwise(float[] got, float[] want, String what) {
        for (int i = 0; i < got.length; i++) {
            if (Float.floatToRawIntBits(got[i]) != Float.floatToRawIntBits(want[i])) {
                throw new AssertionError(what + " [" + i + "]: got " + got[i] + ", want " + want[i]);
            }
        }
    }

    // ---------------------------------------------------------------- conversions

    /**
     * The Java definition of Float.float16ToFloat (its interpreted code): a NaN keeps its
     * payload; the JIT's intrinsic (vcvtph2ps) sets the quiet bit, so call sites may disagree
     * on signalling NaNs. The kernels use their own conversion that never quiets.
     */
    static int f16Reference(short s) {
        int b = s;
        int sign = b & 0x8000;
        int exp = (b >> 10) & 0x1F;
        int mant = b & 0x3FF;
        if (exp == 0x1F) {
            return (sign << 16) | 0x7F800000 | (mant << 13);
        }
        return Float.floatToRawIntBits(Float.float16ToFloat(s));
    }

    /** The vector F16 widening equals Float.float16ToFloat (its Java definition) for all 65,536 bit patterns. */
    @Test
    void f16WideningIsExactForAllValues() {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment seg = arena.allocate(65536 * 2 + 1).asSlice(1, 65536 * 2);
            for (int i = 0; i < 65536; i++) {
                seg.set(Tensor.I16_LE, i * 2L, (short) i);
            }
            int l = VectorKernels.L;
            float[] buf = new float[l];
            for (int i = 0; i < 65536; i += l) {
                VectorKernels.loadF16(seg, i * 2L).intoArray(buf, 0);
                for (int j = 0; j < l; j++) {
                    int want = f16Reference((short) (i + j));
                    assertThat(Integer.toHexString(Float.floatToRawIntBits(buf[j])))
                            .as("f16 bits %04x", i + j).isEqualTo(Integer.toHexString(want));
                }
            }
            float[] all = new float[65536];
            VectorKernels.widen(seg, DType.F16, 0, all, 0, 65536);
            for (int i = 0; i < 65536; i++) {
                assertThat(Float.floatToRawIntBits(all[i])).isEqualTo(f16Reference((short) i));
                assertThat(Float.floatToRawIntBits(VectorKernels.f16ToFloat((short) i))).isEqualTo(f16Reference((short) i));
            }
        }
    }

    @Test
    void bf16WideningIsExact() {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment seg = arena.allocate(65536 * 2 + 1).asSlice(1, 65536 * 2);
            for (int i = 0; i < 65536; i++) {
                seg.set(Tensor.I16_LE, i * 2L, (short) i);
            }
            float[] all = new float[65536];
            VectorKernels.widen(seg, DType.BF16, 0, all, 0, 65536);
            for (int i = 0; i < 65536; i++) {
                assertThat(Float.floatToRawIntBits(all[i])).isEqualTo(i << 16);
            }
        }
    }

    /** exp: within 2 ulp of Math.exp over the whole float range that matters; vector and scalar forms agree bitwise. */
    @Test
    void expWithinTwoUlp() {
        int l = VectorKernels.L;
        int n = 200_000;
        float[] xs = new float[n + 8];
        for (int i = 0; i < n; i++) {
            xs[i] = -103f + 192f * i / n;
        }
        xs[n] = Float.NEGATIVE_INFINITY;
        xs[n + 1] = Float.POSITIVE_INFINITY;
        xs[n + 2] = Float.NaN;
        xs[n + 3] = 0f;
        xs[n + 4] = -0f;
        xs[n + 5] = 88.72f;
        xs[n + 6] = -87.5f;
        xs[n + 7] = 1e-8f;
        float[] got = new float[xs.length + l];
        for (int i = 0; i + l <= xs.length; i += l) {
            VectorKernels.exp(FloatVector.fromArray(VectorKernels.F, xs, i)).intoArray(got, i);
        }
        for (int i = 0; i < xs.length; i++) {
            float want = (float) Math.exp(xs[i]);
            float scalar = VectorKernels.expScalar(xs[i]);
            if (i + l <= xs.length - xs.length % l) {
                assertThat(Float.floatToRawIntBits(got[i])).as("vector vs scalar exp(%s)", xs[i])
                        .isEqualTo(Float.floatToRawIntBits(scalar));
            }
            if (Float.isNaN(want)) {
                assertThat(scalar).isNaN();
            } else if (want == 0f || Float.isInfinite(want)) {
                assertThat(scalar).as("exp(%s)", xs[i]).isEqualTo(want);
            } else {
                assertThat(Math.abs(scalar - want)).as("exp(%s)", xs[i]).isLessThanOrEqualTo(2 * Math.ulp(want));
            }
        }
    }

    // ---------------------------------------------------------------- elementwise

    @Test
    void rmsnormMatchesScalar() {
        SplittableRandom r = new SplittableRandom(1);
        try (Arena arena = Arena.ofShared()) {
            for (int n : TestTensors.ODD) {
                for (int m : new int[] {1, 3}) {
                    float[] x = TestTensors.gaussian(r, m * n + 2, 3f);
                    for (DType dt : TestTensors.FLOATS) {
                        for (boolean withWeight : new boolean[] {false, true}) {
                            Tensor w = withWeight ? TestTensors.vector(arena, r, dt, n, 1f, 0.2f) : null;
                            float[] want = new float[m * n + 1];
                            float[] got = new float[m * n + 1];
                            ScalarKernels.rmsnorm(x, 2, m, n, w, 1e-5f, want, 1);
                            VectorKernels.rmsnorm(x, 2, m, n, w, 1e-5f, got, 1);
                            // Sum of squares in float lanes vs double: a few ulp of the scale.
                            assertClose(got, want, 2e-6, 1e-30, "rmsnorm " + dt + " n=" + n + " m=" + m + " w=" + withWeight);
                        }
                    }
                }
            }
        }
    }

    @Test
    void softmaxMatchesScalar() {
        SplittableRandom r = new SplittableRandom(2);
        for (int n : TestTensors.ODD) {
            for (float scale : new float[] {1f, 30f}) {
                float[] want = TestTensors.gaussian(r, n + 3, scale);
                float[] got = want.clone();
                ScalarKernels.softmax(want, 3, n);
                VectorKernels.softmax(got, 3, n);
                // exp within 2 ulp, sums in another order: relative 1e-5 per probability.
                assertClose(got, want, 1e-5, 1e-37, "softmax n=" + n);
                double sum = 0;
                for (int i = 3; i < n + 3; i++) {
                    sum += got[i];
                }
                assertThat(sum).isCloseTo(1.0, org.assertj.core.data.Offset.offset(1e-5));
            }
        }
        float[] inf = {Float.NEGATIVE_INFINITY, 0f, Float.NEGATIVE_INFINITY, 0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f};
        float[] want = inf.clone();
        ScalarKernels.softmax(want, 0, inf.length);
        VectorKernels.softmax(inf, 0, inf.length);
        assertClose(inf, want, 1e-5, 1e-37, "softmax with -inf");
    }

    @Test
    void siluMulMatchesScalar() {
        SplittableRandom r = new SplittableRandom(3);
        for (int n : TestTensors.ODD) {
            float[] g = TestTensors.gaussian(r, n + 1, 4f);
            g[1] = -100f;
            if (n > 2) {
                g[2] = 95f;
            }
            float[] u = TestTensors.gaussian(r, n + 2, 1f);
            float[] want = new float[n];
            float[] got = new float[n];
            ScalarKernels.siluMul(g, 1, u, 2, want, 0, n);
            VectorKernels.siluMul(g, 1, u, 2, got, 0, n);
            assertClose(got, want, 1e-6, 1e-37, "siluMul n=" + n);
            // In place, as SwiGlu calls it.
            float[] inPlace = g.clone();
            VectorKernels.siluMul(inPlace, 1, u, 2, inPlace, 1, n);
            float[] shifted = new float[n];
            System.arraycopy(inPlace, 1, shifted, 0, n);
            assertBitwise(shifted, got, "siluMul in place n=" + n);
        }
    }

    @Test
    void axpyIsBitwiseScalar() {
        SplittableRandom r = new SplittableRandom(4);
        for (int n : TestTensors.ODD) {
            float[] x = TestTensors.gaussian(r, n + 1, 1f);
            float[] y0 = TestTensors.gaussian(r, n + 2, 1f);
            float[] want = y0.clone();
            float[] got = y0.clone();
            ScalarKernels.axpy(0.37f, x, 1, want, 2, n);
            VectorKernels.axpy(0.37f, x, 1, got, 2, n);
            assertBitwise(got, want, "axpy n=" + n);
        }
    }

    @Test
    void dotMatchesScalar() {
        SplittableRandom r = new SplittableRandom(5);
        for (int n : TestTensors.ODD) {
            float[] a = TestTensors.gaussian(r, n + 1, 1f);
            float[] b = TestTensors.gaussian(r, n + 3, 1f);
            double bound = 0;
            for (int i = 0; i < n; i++) {
                bound += Math.abs(a[1 + i] * b[3 + i]);
            }
            float want = ScalarKernels.dot(a, 1, b, 3, n);
            float got = VectorKernels.dot(a, 1, b, 3, n);
            assertThat((double) Math.abs(got - want)).as("dot n=%d", n).isLessThanOrEqualTo(1e-5 * bound);
        }
    }

    @Test
    void ropeIsBitwiseScalar() {
        SplittableRandom r = new SplittableRandom(6);
        for (RopeStyle style : RopeStyle.values()) {
            for (int headDim : new int[] {2, 16, 34, 64, 128}) {
                for (int rotaryDim : new int[] {headDim, headDim / 2 / 2 * 2}) {
                    int nHeads = 3;
                    float[] x = TestTensors.gaussian(r, nHeads * headDim + 1, 1f);
                    float[] cos = TestTensors.gaussian(r, rotaryDim / 2 + 2, 1f);
                    float[] sin = TestTensors.gaussian(r, rotaryDim / 2 + 2, 1f);
                    float[] want = x.clone();
                    float[] got = x.clone();
                    ScalarKernels.rope(want, 1, nHeads, headDim, rotaryDim, cos, sin, 2, style);
                    VectorKernels.rope(got, 1, nHeads, headDim, rotaryDim, cos, sin, 2, style);
                    assertBitwise(got, want, "rope " + style + " headDim=" + headDim + " rotary=" + rotaryDim);
                }
            }
        }
    }

    // ---------------------------------------------------------------- attention

    @Test
    void attentionMatchesScalar() {
        SplittableRandom r = new SplittableRandom(7);
        int[][] heads = {{8, 2}, {4, 4}, {2, 1}, {1, 1}};
        int[] keysCounts = {0, 1, 3, 17, 100, 257};
        int[][] dims = {{64, 64}, {17, 33}, {3, 3}, {128, 64}};
        for (int[] hv : heads) {
            for (int nKeys : keysCounts) {
                for (int[] d : dims) {
                    int nHeads = hv[0];
                    int nKv = hv[1];
                    int dk = d[0];
                    int dv = d[1];
                    int strideK = nKv * dk + 5;
                    int strideV = nKv * dv + 3;
                    float[] q = TestTensors.gaussian(r, nHeads * dk + 1, 1f);
                    float[] keys = TestTensors.gaussian(r, Math.max(1, nKeys) * strideK + 2, 1f);
                    float[] values = TestTensors.gaussian(r, Math.max(1, nKeys) * strideV + 4, 1f);
                    float scale = (float) (1 / Math.sqrt(dk));
                    float[] want = new float[nHeads * dv + 2];
                    float[] got = new float[nHeads * dv + 2];
                    float[] got2 = new float[nHeads * dv + 2];
                    ScalarKernels.attention(q, 1, keys, 2, values, 4, strideK, strideV, nKeys, nHeads, nKv,
                            dk, dv, scale, want, 2, new float[nKeys]);
                    VectorKernels.attention(q, 1, keys, 2, values, 4, strideK, strideV, nKeys, nHeads, nKv,
                            dk, dv, scale, got, 2, new float[nKeys], pool2);
                    VectorKernels.attention(q, 1, keys, 2, values, 4, strideK, strideV, nKeys, nHeads, nKv,
                            dk, dv, scale, got2, 2, new float[nKeys], new KernelPoolHolder().single());
                    String what = "attention heads=" + nHeads + "/" + nKv + " keys=" + nKeys + " dims=" + dk + "/" + dv;
                    // Outputs are convex combinations of N(0,1) values: absolute 1e-5.
                    assertClose(got, want, 0, 1e-5, what);
                    assertBitwise(got2, got, what + " (1 vs 2 threads)");
                }
            }
        }
    }

    @Test
    void attentionRowsMatchesScalarAndContiguous() {
        SplittableRandom r = new SplittableRandom(8);
        for (int nKeys : new int[] {0, 1, 5, 33, 200}) {
            for (int[] d : new int[][] {{64, 64}, {17, 9}}) {
                int nHeads = 8;
                int nKv = 2;
                int dk = d[0];
                int dv = d[1];
                int strideK = nKv * dk;
                int strideV = nKv * dv + 1;
                int slots = nKeys * 2 + 3;
                float[] q = TestTensors.gaussian(r, nHeads * dk, 1f);
                float[] keys = TestTensors.gaussian(r, slots * strideK, 1f);
                float[] values = TestTensors.gaussian(r, slots * strideV, 1f);
                int[] rows = new int[nKeys + 2];
                for (int t = 0; t < nKeys; t++) {
                    rows[t] = (t * 7 + 3) % slots; // scattered pages
                }
                float scale = 0.125f;
                float[] want = new float[nHeads * dv];
                float[] got = new float[nHeads * dv];
                float[] got1 = new float[nHeads * dv];
                ScalarKernels.attentionRows(q, 0, keys, values, rows, strideK, strideV, nKeys, nHeads, nKv,
                        dk, dv, scale, want, 0, new float[nKeys]);
                VectorKernels.attentionRows(q, 0, keys, values, rows, strideK, strideV, nKeys, nHeads, nKv,
                        dk, dv, scale, got, 0, new float[nKeys], pool2);
                Kernels.attentionRows(q, 0, keys, values, rows, strideK, strideV, nKeys, nHeads, nKv,
                        dk, dv, scale, got1, 0, new float[nKeys]);
                String what = "attentionRows keys=" + nKeys + " dims=" + dk + "/" + dv;
                assertClose(got, want, 0, 1e-5, what);
                assertBitwise(got1, got, what + " (facade)");
                // Identity rows give the contiguous kernel's bits.
                int[] id = new int[nKeys];
                for (int t = 0; t < nKeys; t++) {
                    id[t] = t;
                }
                float[] viaRows = new float[nHeads * dv];
                float[] contiguous = new float[nHeads * dv];
                VectorKernels.attentionRows(q, 0, keys, values, id, strideK, strideV, nKeys, nHeads, nKv,
                        dk, dv, scale, viaRows, 0, new float[nKeys], pool2);
                VectorKernels.attention(q, 0, keys, 0, values, 0, strideK, strideV, nKeys, nHeads, nKv,
                        dk, dv, scale, contiguous, 0, new float[nKeys], pool2);
                assertBitwise(viaRows, contiguous, what + " (identity rows)");
            }
        }
    }

    /** A one-thread pool needs no close. */
    static final class KernelPoolHolder {
        private static final KernelPool ONE = new KernelPool(1);

        KernelPool single() {
            return ONE;
        }
    }
}
