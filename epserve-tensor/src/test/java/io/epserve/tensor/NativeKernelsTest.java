package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

import org.junit.jupiter.api.Test;

/**
 * The native quantized matvec kernels against the Vector API kernels they replace: bitwise
 * equal on random blocks (and on blocks with extreme quants and scales), for any row range,
 * offsets and misaligned weights; and loaded wherever they can run.
 */
class NativeKernelsTest {

    /** On Linux x86-64 with AVX2/FMA/F16C, an 8-lane JVM and the library built, the library must be in use. */
    @Test
    void inUseWhereverItCanRun() throws IOException {
        boolean linuxX86 = System.getProperty("os.name").startsWith("Linux") && System.getProperty("os.arch").equals("amd64");
        assumeTrue(linuxX86 && VectorKernels.L == 8 && System.getProperty("epserve.kernels") == null,
                "not an 8-lane Linux x86-64 JVM with default kernels");
        String flags = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("flags")).findFirst().orElse("");
        boolean cpu = flags.contains(" avx2") && flags.contains(" fma") && flags.contains(" f16c");
        boolean built = NativeKernels.class.getResource(NativeKernels.RESOURCE) != null;
        assumeTrue(cpu && built, "CPU without AVX2/FMA/F16C, or no C compiler at build time");
        assertThat(NativeKernels.ENABLED).as(NativeKernels.status()).isTrue();
        assertThat(NativeKernels.status()).startsWith("native");
        for (DType dt : QuantizerTest.QUANTIZED) {
            assertThat(NativeKernels.handles(dt)).as(dt.toString()).isTrue();
        }
        assertThat(NativeKernels.handles(DType.MXFP4)).isFalse();
        assertThat(NativeKernels.handles(DType.BF16)).isFalse();
    }

    @Test
    void bitwiseEqualToVectorKernelsOnRandomBlocks() {
        assumeTrue(NativeKernels.ENABLED, NativeKernels.status());
        SplittableRandom r = new SplittableRandom(31);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : QuantizerTest.QUANTIZED) {
                for (int k : QuantizedMatmulTest.colsFor(dt)) {
                    for (int n : new int[] {1, 2, 3, 5, 7, 17, 33}) {
                        Tensor w = QuantizedMatmulTest.quantized(arena, r, dt, n, k, 0.05f);
                        compare(dt, w, r, 0, n);
                        if (n > 2) {
                            compare(dt, w, r, 1, n - 1);
                        }
                    }
                }
            }
        }
    }

    /**
     * Bytes drawn at random (every int8 quant including −128, every nibble, every 6-bit scale and
     * min) under finite scales of every magnitude, so no decoding shortcut can hide.
     */
    @Test
    void bitwiseEqualOnArbitraryBytes() {
        assumeTrue(NativeKernels.ENABLED, NativeKernels.status());
        SplittableRandom r = new SplittableRandom(32);
        try (Arena arena = Arena.ofShared()) {
            for (DType dt : QuantizerTest.QUANTIZED) {
                int k = dt.blockSize() * 5;
                int n = 11;
                long bytes = dt.bytesFor((long) n * k);
                MemorySegment seg = arena.allocate(bytes + 3, 64).asSlice(3, bytes);
                for (long b = 0; b < bytes; b++) {
                    seg.set(ValueLayout.JAVA_BYTE, b, (byte) r.nextInt(256));
                }
                for (long blk = 0; blk < bytes / dt.blockBytes(); blk++) {
                    long o = blk * dt.blockBytes();
                    // finite f16 scales: exponent field below 31, any sign and mantissa
                    seg.set(Tensor.I16_LE, o, finiteF16(r));
                    if (dt == DType.Q4_K) {
                        seg.set(Tensor.I16_LE, o + Quantizer.K_DMIN, finiteF16(r));
                    }
                }
                Tensor w = new Tensor("w", seg, dt, new long[] {n, k});
                compare(dt, w, r, 0, n);
            }
        }
    }

    @Test
    void refusesRowsOutsideTheWeights() {
        assumeTrue(NativeKernels.ENABLED, NativeKernels.status());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(DType.Q8_0.bytesFor(3 * 64));
            float[] x = new float[64];
            float[] y = new float[4];
            assertThatThrownBy(() -> NativeKernels.matvec(x, 0, seg, DType.Q8_0, 64, y, 0, 0, 4))
                    .isInstanceOf(IndexOutOfBoundsException.class).hasMessageContaining("rows [0, 4)");
            assertThatThrownBy(() -> NativeKernels.matvec(x, 1, seg, DType.Q8_0, 64, y, 0, 0, 3))
                    .isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> NativeKernels.matvec(x, 0, seg, DType.Q8_0, 64, y, 2, 0, 3))
                    .isInstanceOf(IndexOutOfBoundsException.class);
            assertThatThrownBy(() -> NativeKernels.matvec(x, 0, seg, DType.Q8_0, 48, y, 0, 0, 1))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("whole blocks");
        }
    }

    private static short finiteF16(SplittableRandom r) {
        int exp = r.nextInt(31);
        return (short) ((r.nextInt(2) << 15) | (exp << 10) | r.nextInt(1024));
    }

    /** Rows [r0, r1) of w times a random token, both kernels, at odd offsets; then bit for bit. */
    private static void compare(DType dt, Tensor w, SplittableRandom r, int r0, int r1) {
        int n = w.rows();
        int k = w.cols();
        float[] x = TestTensors.gaussian(r, k + 3, 1f);
        float[] want = new float[n + 2];
        float[] got = new float[n + 2];
        QuantizedKernels.matvecVector(x, 3, w.data(), dt, k, want, 2, r0, r1);
        NativeKernels.matvec(x, 3, w.data(), dt, k, got, 2, r0, r1);
        for (int i = 0; i < got.length; i++) {
            assertThat(Float.floatToRawIntBits(got[i]))
                    .as("%s n=%d k=%d rows [%d, %d) y[%d]: native %s, Vector API %s", dt, n, k, r0, r1, i, got[i], want[i])
                    .isEqualTo(Float.floatToRawIntBits(want[i]));
        }
    }
}
