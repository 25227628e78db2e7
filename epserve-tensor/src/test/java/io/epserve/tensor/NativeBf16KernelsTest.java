package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.offset;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The native BF16 matmul against the Vector API kernels it stands in for: bitwise equal for every
 * m (matvec, the few-token and group tiles, the staged batched kernel), odd sizes, row ranges,
 * offsets and unaligned weights; close to the scalar twin; and loaded wherever it can run.
 */
class NativeBf16KernelsTest {

    /** On Linux x86-64 with AVX2/FMA, an 8-lane JVM and the library built, the library must be in use. */
    @Test
    void inUseWhereverItCanRun() throws IOException {
        boolean linuxX86 = System.getProperty("os.name").startsWith("Linux") && System.getProperty("os.arch").equals("amd64");
        assumeTrue(linuxX86 && VectorKernels.L == 8 && System.getProperty("epserve.kernels") == null,
                "not an 8-lane Linux x86-64 JVM with default kernels");
        String flags = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("flags")).findFirst().orElse("");
        boolean built = NativeBf16Kernels.class.getResource(NativeBf16Kernels.RESOURCE) != null;
        assumeTrue(flags.contains(" avx2") && flags.contains(" fma") && built, "CPU without AVX2/FMA, or no C compiler at build time");
        assertThat(NativeBf16Kernels.ENABLED).as(NativeBf16Kernels.status()).isTrue();
        assertThat(Kernels.bf16MatmulKernels()).startsWith("native");
    }

    @Test
    void bitwiseEqualToVectorKernelsForEveryTokenCount() {
        assumeTrue(NativeBf16Kernels.ENABLED, NativeBf16Kernels.status());
        SplittableRandom r = new SplittableRandom(41);
        try (Arena arena = Arena.ofShared()) {
            for (int k : new int[] {1, 7, 8, 9, 67, 1027}) {
                for (int n : new int[] {1, 3, 4, 9, 17, 33}) {
                    Tensor w = TestTensors.weight(arena, r, DType.BF16, n, k, 0.05f);
                    for (int m : new int[] {1, 2, 3, 4, 5, 7, 8, 13, 24, 25, 40}) {
                        compare(w, r, m, 0, n);
                        if (n > 2) {
                            compare(w, r, m, 1, n - 1);
                        }
                    }
                }
            }
        }
    }

    /** Bits of every finite BF16 value (both signs, subnormals, the largest exponents) go through unchanged. */
    @Test
    void bitwiseEqualOnArbitraryFiniteWeights() {
        assumeTrue(NativeBf16Kernels.ENABLED, NativeBf16Kernels.status());
        SplittableRandom r = new SplittableRandom(42);
        try (Arena arena = Arena.ofShared()) {
            int n = 13;
            int k = 45;
            MemorySegment seg = arena.allocate(2L * n * k + 2, 64).asSlice(2, 2L * n * k);
            for (long i = 0; i < (long) n * k; i++) {
                // exponent field below 255: finite; products may overflow to infinity in both kernels alike
                seg.set(Tensor.I16_LE, 2 * i, (short) ((r.nextInt(2) << 15) | (r.nextInt(255) << 7) | r.nextInt(128)));
            }
            Tensor w = new Tensor("w", seg, DType.BF16, new long[] {n, k});
            for (int m : new int[] {1, 3, 6, 30}) {
                compare(w, r, m, 0, n);
            }
        }
    }

    /** Through the public matmul (threads, chunks, the call splitting of large matmuls): close to the scalar twin. */
    @Test
    void matmulCloseToScalarTwin() {
        SplittableRandom r = new SplittableRandom(43);
        try (Arena arena = Arena.ofShared()) {
            int n = 300;
            int k = 1031;
            int m = 33;
            Tensor w = TestTensors.weight(arena, r, DType.BF16, n, k, 0.05f);
            float[] x = TestTensors.gaussian(r, m * k, 1f);
            float[] got = new float[m * n];
            float[] want = new float[m * n];
            Kernels.matmul(x, 0, m, w, got, 0);
            ScalarKernels.matmul(x, 0, m, w, want, 0);
            for (int i = 0; i < got.length; i++) {
                assertThat(got[i]).as("y[%d]", i).isCloseTo(want[i], offset(1e-3f * (1 + Math.abs(want[i]))));
            }
            // a token's result does not depend on its batch
            float[] one = new float[n];
            Kernels.matmul(x, 5 * k, 1, w, one, 0);
            for (int j = 0; j < n; j++) {
                assertThat(Float.floatToRawIntBits(one[j])).as("row %d", j).isEqualTo(Float.floatToRawIntBits(got[5 * n + j]));
            }
        }
    }

    /** Whichever kernels the dispatch picks call by call (library, timed Vector API probes, warm Vector API), the bits are the same. */
    @Test
    void dispatchGivesTheSameBitsCallAfterCall() {
        assumeTrue(NativeBf16Kernels.ENABLED, NativeBf16Kernels.status());
        SplittableRandom r = new SplittableRandom(44);
        try (Arena arena = Arena.ofShared()) {
            int n = 40;
            int k = 200;
            Tensor w = TestTensors.weight(arena, r, DType.BF16, n, k, 0.05f);
            for (int m : new int[] {1, 4, 6, 30}) {
                float[] x = TestTensors.gaussian(r, m * k, 1f);
                float[] want = new float[m * n];
                VectorKernels.vectorRows(x, 0, m, w.data(), DType.BF16, n, k, want, 0, 0, n);
                for (int call = 0; call < 300; call++) {
                    float[] got = new float[m * n];
                    NativeBf16Kernels.dispatch(x, 0, m, w.data(), n, k, got, 0, 0, n);
                    for (int i = 0; i < got.length; i++) {
                        assertThat(Float.floatToRawIntBits(got[i])).as("m=%d call %d y[%d]", m, call, i)
                                .isEqualTo(Float.floatToRawIntBits(want[i]));
                    }
                }
            }
        }
    }

    @Test
    void refusesRangesOutsideTheArrays() {
        assumeTrue(NativeBf16Kernels.ENABLED, NativeBf16Kernels.status());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(2L * 3 * 16);
            float[] x = new float[2 * 16];
            float[] y = new float[2 * 3];
            assertThatThrownBy(() -> NativeBf16Kernels.rows(x, 0, 2, seg, 4, 16, y, 0, 0, 4))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("rows [0, 4)");
            assertThatThrownBy(() -> NativeBf16Kernels.rows(x, 1, 2, seg, 3, 16, y, 0, 0, 3))
                    .isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> NativeBf16Kernels.rows(x, 0, 2, seg, 3, 16, y, 1, 0, 3))
                    .isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> NativeBf16Kernels.rows(x, 0, 2, seg, 3, 16, y, 0, 2, 1))
                    .isInstanceOf(IndexOutOfBoundsException.class);
        }
    }

    /** Rows [r0, r1) of w times m random tokens, both kernels, at odd offsets; then bit for bit. */
    private static void compare(Tensor w, SplittableRandom r, int m, int r0, int r1) {
        int n = w.rows();
        int k = w.cols();
        float[] x = TestTensors.gaussian(r, m * k + 3, 1f);
        float[] want = new float[m * n + 2];
        float[] got = new float[m * n + 2];
        VectorKernels.vectorRows(x, 3, m, w.data(), DType.BF16, n, k, want, 2, r0, r1);
        NativeBf16Kernels.rows(x, 3, m, w.data(), n, k, got, 2, r0, r1);
        for (int i = 0; i < got.length; i++) {
            assertThat(Float.floatToRawIntBits(got[i]))
                    .as("m=%d n=%d k=%d rows [%d, %d) y[%d]: native %s, Vector API %s", m, n, k, r0, r1, i, got[i], want[i])
                    .isEqualTo(Float.floatToRawIntBits(want[i]));
        }
    }
}
