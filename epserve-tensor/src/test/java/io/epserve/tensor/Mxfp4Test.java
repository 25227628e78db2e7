package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;

/** MXFP4 blocks: the decoding of the OCP microscaling format, and the matmul computing on them directly. */
class Mxfp4Test {

    /** Random MXFP4 blocks: any code, scales around 2^-4. */
    static Tensor random(Arena arena, SplittableRandom r, int rows, int cols) {
        long bytes = DType.MXFP4.bytesFor((long) rows * cols);
        MemorySegment seg = arena.allocate(bytes);
        for (long b = 0; b < bytes; b += 17) {
            seg.set(ValueLayout.JAVA_BYTE, b, (byte) (127 - 6 + r.nextInt(4)));
            for (int j = 1; j < 17; j++) {
                seg.set(ValueLayout.JAVA_BYTE, b + j, (byte) r.nextInt(256));
            }
        }
        return new Tensor("w", seg, DType.MXFP4, new long[] {rows, cols});
    }

    @Test
    void decodesTheE2M1CodesTimesThePowerOfTwoScale() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(17);
            seg.set(ValueLayout.JAVA_BYTE, 0, (byte) 128); // 2^1
            seg.set(ValueLayout.JAVA_BYTE, 1, (byte) 0xF7); // weight 0: code 7 (6.0), weight 16: code 15 (-6.0)
            seg.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x91); // weight 1: code 1 (0.5), weight 17: code 9 (-0.5)
            Tensor t = new Tensor("b", seg, DType.MXFP4, new long[] {1, 32});
            assertThat(t.getFloat(0)).isEqualTo(12f);
            assertThat(t.getFloat(16)).isEqualTo(-12f);
            assertThat(t.getFloat(1)).isEqualTo(1f);
            assertThat(t.getFloat(17)).isEqualTo(-1f);
            assertThat(t.getFloat(2)).isEqualTo(0f);
            float[] row = new float[32];
            Quantizer.dequantizeRow(seg, 0, DType.MXFP4, row, 0, 32);
            for (int i = 0; i < 32; i++) {
                assertThat(row[i]).isEqualTo(t.getFloat(i));
            }
            seg.set(ValueLayout.JAVA_BYTE, 0, (byte) 0xFF);
            assertThat(Quantizer.firstNonFinite(t)).isZero();
        }
    }

    @Test
    void matmulOnBlocksEqualsMatmulOnTheDecodedWeights() {
        SplittableRandom r = new SplittableRandom(3);
        try (Arena arena = Arena.ofShared()) {
            for (int[] shape : new int[][] {{5, 32}, {17, 96}, {64, 2880}}) {
                Tensor w = random(arena, r, shape[0], shape[1]);
                Tensor f = Tensor.ofFloats("w-f32", w.toFloatArray(), shape[0], shape[1]);
                for (int m : new int[] {1, 3}) {
                    float[] x = TestTensors.gaussian(r, m * shape[1], 1f);
                    float[] want = new float[m * shape[0]];
                    float[] got = new float[m * shape[0]];
                    float[] scalar = new float[m * shape[0]];
                    Kernels.matmul(x, 0, m, f, want, 0);
                    Kernels.matmul(x, 0, m, w, got, 0);
                    ScalarKernels.matmul(x, 0, m, w, scalar, 0);
                    assertThat(got).containsExactly(want);
                    for (int i = 0; i < want.length; i++) {
                        assertThat(scalar[i]).isCloseTo(want[i], Offset.offset(1e-3f * (1 + Math.abs(want[i]))));
                    }
                }
            }
        }
    }

    @Test
    void epserveDoesNotQuantizeToIt() {
        assertThatThrownBy(() -> Quantizer.quantizeRow(new float[32], 0, 32, DType.MXFP4, MemorySegment.ofArray(new byte[17]), 0))
                .hasMessageContaining("MXFP4");
    }
}
