package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

/**
 * The int8-activation products ({@link QuantizedActivations#INT8}): the activation quantizer
 * against its definition, the Vector API and native kernels against the scalar twin (bitwise,
 * on random and arbitrary bytes), the whole matmul against dequantize-then-compute within the
 * bound the quantization allows, and batch invariance.
 */
class Int8KernelsTest {

    /** The dtypes with an int8-activation product. */
    static final DType[] INT8 = {DType.Q8_0, DType.Q4_0, DType.Q4_K};

    /** Row lengths for dt: whole blocks (Q4_K: super-blocks of 256). */
    static int[] cols(DType dt) {
        return dt == DType.Q4_K ? new int[] {256, 768} : new int[] {32, 96, 1024};
    }

    @Test
    void quantizationFollowsItsDefinition() {
        SplittableRandom r = new SplittableRandom(41);
        float[] x = TestTensors.gaussian(r, 32 * 6, 3f);
        x[5] = 0f;
        // block 1 all zero, block 2 tiny, block 3 holds a tie (x · id = 0.5 exactly), block 4 an infinity, block 5 a NaN
        for (int j = 32; j < 64; j++) {
            x[j] = 0f;
        }
        for (int j = 64; j < 96; j++) {
            x[j] = 0x1p-110f * (j - 80);
        }
        for (int j = 96; j < 128; j++) {
            x[j] = (j - 112) * 0.5f;
        }
        x[96] = 127f;
        x[140] = Float.NEGATIVE_INFINITY;
        x[170] = Float.NaN;
        byte[] q = new byte[x.length];
        float[] d = new float[6];
        int[] sum = new int[6];
        Int8Activations.quantizeRow(x, 0, 6, q, 0, d, 0, sum, 0);
        // block 0: d = f16(amax / 127), q = rint(x · 127 / amax), the largest magnitude maps to ±127
        float amax = 0f;
        for (int j = 0; j < 32; j++) {
            amax = Math.max(amax, Math.abs(x[j]));
        }
        assertThat(d[0]).isEqualTo(Float.float16ToFloat(Float.floatToFloat16(amax / 127f)));
        boolean extreme = false;
        for (int j = 0; j < 32; j++) {
            assertThat(q[j]).isEqualTo((byte) Math.rint(x[j] * (127f / amax)));
            assertThat(Math.abs(x[j] - d[0] * q[j])).isLessThanOrEqualTo(d[0] * 0.57f);
            extreme |= Math.abs(q[j]) == 127;
        }
        assertThat(extreme).isTrue();
        for (int b = 0; b < 6; b++) {
            int want = 0;
            for (int j = 0; j < 32; j++) {
                want += q[32 * b + j];
            }
            assertThat(sum[b]).as("sum of block %d", b).isEqualTo(want);
        }
        assertThat(q[5]).isZero();
        assertThat(d[1]).isZero();
        assertThat(d[2]).as("tiny blocks are stored as zeros").isZero();
        for (int j = 32; j < 96; j++) {
            assertThat(q[j]).isZero();
        }
        // block 3: amax 127, id 1, x = k/2: ties round to even (0.5 → 0, 1.5 → 2, -0.5 → -0, -1.5 → -2)
        assertThat(d[3]).isEqualTo(1f);
        assertThat(q[96 + 17]).isEqualTo((byte) 0);   // 0.5
        assertThat(q[96 + 19]).isEqualTo((byte) 2);   // 1.5
        assertThat(q[96 + 15]).isEqualTo((byte) 0);   // -0.5
        assertThat(q[96 + 13]).isEqualTo((byte) -2);  // -1.5
        assertThat(d[4]).isNaN();
        assertThat(d[5]).isNaN();
        for (int j = 128; j < 192; j++) {
            assertThat(q[j]).isZero();
        }
    }

    @Test
    void nativeQuantizationEqualsTheDefinition() {
        assumeTrue(NativeKernels.ENABLED, NativeKernels.status());
        SplittableRandom r = new SplittableRandom(42);
        for (int trial = 0; trial < 200; trial++) {
            int blocks = 1 + r.nextInt(40);
            float[] x = new float[blocks * 32 + 3];
            for (int i = 0; i < x.length; i++) {
                x[i] = switch (r.nextInt(12)) {
                    case 0 -> Float.intBitsToFloat(r.nextInt());          // any bits: NaN, ±∞, subnormal, huge
                    case 1 -> 0f;
                    case 2 -> (float) (r.nextInt(255) - 127) * 0.5f;      // ties after scaling
                    case 3 -> 0x1p-120f * (float) TestTensors.nextGaussian(r);
                    default -> (float) (TestTensors.nextGaussian(r) * Math.scalb(1.0, r.nextInt(40) - 20));
                };
            }
            byte[] want = new byte[blocks * 32];
            float[] wantD = new float[blocks];
            int[] wantSum = new int[blocks];
            Int8Activations.quantizeRow(x, 3, blocks, want, 0, wantD, 0, wantSum, 0);
            byte[] got = new byte[blocks * 32];
            float[] gotD = new float[blocks];
            int[] gotSum = new int[blocks];
            NativeKernels.quantizeInt8(x, 3, blocks, got, gotD, gotSum);
            assertThat(got).as("trial %d", trial).isEqualTo(want);
            assertThat(gotSum).as("trial %d", trial).isEqualTo(wantSum);
            for (int b = 0; b < blocks; b++) {
                assertThat(Float.floatToRawIntBits(gotD[b])).as("trial %d block %d: %s vs %s", trial, b, gotD[b], wantD[b])
                        .isEqualTo(Float.floatToRawIntBits(wantD[b]));
            }
        }
    }

    /** Random weights and activations: Vector API and native kernels equal the scalar twin bit for bit, any row range and m. */
    @Test
    void kernelsEqualTheScalarTwinOnRandomBlocks() {
        SplittableRandom r = new SplittableRandom(43);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : INT8) {
                for (int k : cols(dt)) {
                    for (int n : new int[] {1, 2, 3, 9, 17, 33}) {
                        Tensor w = QuantizedMatmulTest.quantized(arena, r, dt, n, k, 0.05f);
                        for (int m : new int[] {1, 3}) {
                            compare(w, TestTensors.gaussian(r, m * k, 1f), m, 0, n);
                            if (n > 2) {
                                compare(w, TestTensors.gaussian(r, m * k, 1f), m, 1, n - 1);
                            }
                        }
                    }
                }
            }
        }
    }

    /** Every int8 quant (−128 included), every nibble, scales of every finite magnitude: no shortcut can hide. */
    @Test
    void kernelsEqualTheScalarTwinOnArbitraryBytes() {
        SplittableRandom r = new SplittableRandom(44);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : INT8) {
                int k = dt == DType.Q4_K ? 512 : 32 * 7;
                int n = 19;
                long bytes = dt.bytesFor((long) n * k);
                MemorySegment seg = arena.allocate(bytes + 3, 64).asSlice(3, bytes);
                for (long b = 0; b < bytes; b++) {
                    seg.set(ValueLayout.JAVA_BYTE, b, (byte) r.nextInt(256));
                }
                for (long o = 0; o < bytes; o += dt.blockBytes()) {
                    int exp = r.nextInt(31);
                    seg.set(Tensor.I16_LE, o, (short) ((r.nextInt(2) << 15) | (exp << 10) | r.nextInt(1024)));
                    if (dt == DType.Q4_K) {
                        int e = r.nextInt(31);
                        seg.set(Tensor.I16_LE, o + Quantizer.K_DMIN, (short) ((r.nextInt(2) << 15) | (e << 10) | r.nextInt(1024)));
                    }
                }
                Tensor w = new Tensor("w", seg, dt, new long[] {n, k});
                for (int m : new int[] {1, 2, 5}) {
                    float[] x = new float[m * k];
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) (TestTensors.nextGaussian(r) * Math.scalb(1.0, r.nextInt(20) - 10));
                    }
                    compare(w, x, m, 0, n);
                }
            }
        }
    }

    /** Rows [r0, r1) for m tokens: scalar twin, Vector API kernels and (where loaded) native kernels, bit for bit. */
    private static void compare(Tensor w, float[] x, int m, int r0, int r1) {
        DType dt = w.dtype();
        int n = w.rows();
        int k = w.cols();
        Int8Activations a = new Int8Activations();
        a.quantize(x, 0, m, k);
        float[] want = new float[m * n + 2];
        long rowBytes = dt.bytesFor(k);
        for (int t = 0; t < m; t++) {
            for (int row = r0; row < r1; row++) {
                want[2 + t * n + row] = ScalarKernels.dotInt8(a.q, t * k, a.d, t * (k / 32), w.data(), row * rowBytes, dt, k);
            }
        }
        float[] vector = new float[m * n + 2];
        Int8Kernels.rowsVector(a, m, k, w.data(), dt, n, vector, 2, r0, r1);
        check(dt, n, k, m, "Vector API", vector, want);
        if (NativeKernels.ENABLED) {
            float[] nat = new float[m * n + 2];
            NativeKernels.matmulInt8(a.q, a.d, a.sum, m, k, w.data(), dt, n, nat, 2, r0, r1);
            check(dt, n, k, m, "native", nat, want);
        }
    }

    private static void check(DType dt, int n, int k, int m, String what, float[] got, float[] want) {
        for (int i = 0; i < got.length; i++) {
            assertThat(Float.floatToRawIntBits(got[i]))
                    .as("%s %s n=%d k=%d m=%d y[%d]: %s vs scalar twin %s", what, dt, n, k, m, i, got[i], want[i])
                    .isEqualTo(Float.floatToRawIntBits(want[i]));
        }
    }

    /**
     * Against the exact product of the dequantized weights and the float activations: the only
     * differences are each activation's rounding to its block's grid (|x − d·q| ≤ 0.57·d with d
     * an f16, see Int8Activations) and float rounding, so
     * |y − exact| ≤ Σ_b 0.57·d_b·Σ_{j∈b} |w_j| + 1e-5·Σ|w·x|.
     */
    @Test
    void withinTheQuantizationBoundOfDequantizeThenCompute() {
        SplittableRandom r = new SplittableRandom(45);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : INT8) {
                int n = 23;
                int k = dt == DType.Q4_K ? 256 * 3 : 32 * 13;
                Tensor w = QuantizedMatmulTest.quantized(arena, r, dt, n, k, 0.05f);
                float[] wf = w.toFloatArray();
                int m = 4;
                float[] x = TestTensors.gaussian(r, m * k, 1f);
                float[] y = new float[m * n];
                try (KernelPool pool2 = new KernelPool(2)) {
                    VectorKernels.matmul(x, 0, m, w, y, 0, pool2, QuantizedActivations.INT8);
                }
                Int8Activations a = new Int8Activations();
                a.quantize(x, 0, m, k);
                double worst = 0;
                for (int t = 0; t < m; t++) {
                    for (int row = 0; row < n; row++) {
                        double exact = 0;
                        double bound = 0;
                        for (int c = 0; c < k; c++) {
                            double wv = wf[row * k + c];
                            exact += wv * x[t * k + c];
                            bound += Math.abs(wv) * (a.d[t * (k / 32) + c / 32] * 0.57) + 1e-5 * Math.abs(wv * x[t * k + c]);
                        }
                        double err = Math.abs(y[t * n + row] - exact);
                        assertThat(err).as("%s token %d row %d", dt, t, row).isLessThanOrEqualTo(bound);
                        worst = Math.max(worst, err / bound);
                    }
                }
                // the bound is not vacuous: rounding errors partly cancel, but not by orders of magnitude
                assertThat(worst).as("%s worst error / bound", dt).isGreaterThan(1e-3);
            }
        }
    }

    /** The whole matmul: the scalar twin (as -Depserve.kernels=scalar runs it) equals the kernels bit for bit, any m and pool. */
    @Test
    void matmulEqualsTheScalarTwin() {
        SplittableRandom r = new SplittableRandom(46);
        try (Arena arena = Arena.ofShared(); KernelPool pool1 = new KernelPool(1); KernelPool pool3 = new KernelPool(3)) {
            for (DType dt : INT8) {
                int k = dt == DType.Q4_K ? 512 : 320;
                Tensor w = QuantizedMatmulTest.quantized(arena, r, dt, 37, k, 0.05f);
                for (int m : new int[] {1, 2, 7}) {
                    float[] x = TestTensors.gaussian(r, m * k + 1, 1f);
                    float[] want = new float[m * 37];
                    ScalarKernels.matmul(x, 1, m, w, want, 0, QuantizedActivations.INT8);
                    for (KernelPool p : new KernelPool[] {pool1, pool3}) {
                        float[] got = new float[m * 37];
                        VectorKernels.matmul(x, 1, m, w, got, 0, p, QuantizedActivations.INT8);
                        check(dt, 37, k, m, "matmul on " + p.threads() + " threads", got, want);
                    }
                }
            }
        }
    }

    @Test
    void aNonFiniteActivationGivesNaNForEveryRow() {
        SplittableRandom r = new SplittableRandom(47);
        try (Arena arena = Arena.ofShared(); KernelPool pool1 = new KernelPool(1)) {
            for (DType dt : INT8) {
                int k = dt == DType.Q4_K ? 256 : 64;
                Tensor w = QuantizedMatmulTest.quantized(arena, r, dt, 9, k, 0.05f);
                float[] x = TestTensors.gaussian(r, 2 * k, 1f);
                x[k + 40] = Float.POSITIVE_INFINITY;
                float[] y = new float[2 * 9];
                VectorKernels.matmul(x, 0, 2, w, y, 0, pool1, QuantizedActivations.INT8);
                for (int row = 0; row < 9; row++) {
                    assertThat(y[row]).as("%s token 0 row %d", dt, row).isFinite();
                    assertThat(y[9 + row]).as("%s token 1 row %d", dt, row).isNaN();
                }
            }
        }
    }

    /**
     * HARD REQUIREMENT: a token alone (m = 1, one thread) equals the same token inside batches of
     * 37, 2, 3 and 5 on 1, 2 and 3 threads, at other offsets, and through the facade when int8
     * is this JVM's scheme.
     */
    @Test
    void batchInvariantBitwise() {
        try (KernelPool pool1 = new KernelPool(1); KernelPool pool2 = new KernelPool(2); KernelPool pool3 = new KernelPool(3)) {
            QuantizedMatmulTest.assertBatchInvariant(new SplittableRandom(48), INT8, QuantizedActivations.INT8, pool1, pool1, pool2, pool3);
        }
    }

    @Test
    void theSchemeIsOneValidatedValue() {
        assertThat(QuantizedActivations.parse("int8")).isEqualTo(QuantizedActivations.INT8);
        assertThat(QuantizedActivations.parse(" F32 ")).isEqualTo(QuantizedActivations.F32);
        assertThatThrownBy(() -> QuantizedActivations.parse("int4"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(QuantizedActivations.PROPERTY).hasMessageContaining("int8 or f32").hasMessageContaining("'int4'");
        String set = System.getProperty(QuantizedActivations.PROPERTY);
        assertThat(QuantizedActivations.configured())
                .isEqualTo(set == null ? QuantizedActivations.INT8 : QuantizedActivations.parse(set));
        assertThat(Kernels.quantizedMatvecKernels()).startsWith(QuantizedActivations.configured().label() + " activations");
    }

    @Test
    void refusesRangesOutsideTheArrays() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(DType.Q8_0.bytesFor(3 * 64));
            Int8Activations a = new Int8Activations();
            a.quantize(new float[2 * 64], 0, 2, 64);
            byte[] q = new byte[2 * 64];
            float[] d = new float[4];
            int[] sum = new int[4];
            float[] y = new float[6];
            assertThatThrownBy(() -> Int8Kernels.rowsVector(a, 2, 64, seg, DType.Q8_0, 4, new float[8], 0, 0, 4))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("rows [0, 4)");
            assertThatThrownBy(() -> Int8Kernels.rowsVector(a, 3, 64, seg, DType.Q8_0, 3, new float[9], 0, 0, 3))
                    .isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> new Int8Activations().quantize(new float[48], 0, 1, 48))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("whole blocks of 32");
            if (NativeKernels.ENABLED) {
                assertThatThrownBy(() -> NativeKernels.matmulInt8(q, d, sum, 2, 64, seg, DType.Q8_0, 3, y, 1, 0, 3))
                        .isInstanceOf(IndexOutOfBoundsException.class);
                assertThatThrownBy(() -> NativeKernels.matmulInt8(q, d, sum, 2, 64, seg, DType.Q8_0, 4, new float[8], 0, 0, 4))
                        .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("rows [0, 4)");
                assertThatThrownBy(() -> NativeKernels.matmulInt8(q, d, new int[3], 2, 64, seg, DType.Q8_0, 3, y, 0, 0, 3))
                        .isInstanceOf(IndexOutOfBoundsException.class);
                assertThatThrownBy(() -> NativeKernels.quantizeInt8(new float[64], 1, 2, q, d, sum))
                        .isInstanceOf(IndexOutOfBoundsException.class);
            }
        }
    }
}
