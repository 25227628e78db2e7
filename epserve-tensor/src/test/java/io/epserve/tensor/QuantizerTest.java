package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * The block formats byte for byte (GGUF's layouts, restated here independently of Quantizer),
 * and the round-trip error of quantize → dequantize per format.
 */
class QuantizerTest {

    static final DType[] QUANTIZED = {DType.Q8_0, DType.Q4_0, DType.Q4_K};

    static byte at(MemorySegment s, long i) {
        return s.get(ValueLayout.JAVA_BYTE, i);
    }

    static float f16(MemorySegment s, long i) {
        return Float.float16ToFloat(s.get(Tensor.I16_LE, i));
    }

    @Test
    void blockSizesAndBytes() {
        assertThat(DType.Q8_0.bytesFor(64)).isEqualTo(68);
        assertThat(DType.Q4_0.bytesFor(96)).isEqualTo(54);
        assertThat(DType.Q4_K.bytesFor(512)).isEqualTo(288);
        assertThat(DType.BF16.bytesFor(3)).isEqualTo(6);
        assertThat(DType.Q8_0.quantized()).isTrue();
        assertThat(DType.F16.quantized()).isFalse();
        assertThat(DType.fromSafetensors("Q4_K")).isEqualTo(DType.Q4_K);
        assertThat(DType.parse("q4_k")).isEqualTo(DType.Q4_K);
        assertThatThrownBy(() -> DType.parse("int3")).hasMessageContaining("unknown dtype 'int3'").hasMessageContaining("q8_0");
        assertThatThrownBy(() -> DType.Q8_0.bytesFor(33)).hasMessageContaining("blocks of 32");
        assertThatThrownBy(DType.Q4_0::bytes).isInstanceOf(UnsupportedOperationException.class);
    }

    @Test
    void tensorRowsMustBeWholeBlocks() {
        MemorySegment seg = MemorySegment.ofArray(new byte[(int) DType.Q4_K.bytesFor(256)]);
        assertThatThrownBy(() -> new Tensor("model.layers.0.experts.1.w2.weight", seg, DType.Q4_K, new long[] {2, 128}))
                .hasMessageContaining("'model.layers.0.experts.1.w2.weight'").hasMessageContaining("multiple of 256");
        Tensor ok = new Tensor("t", seg, DType.Q4_K, new long[] {1, 256});
        assertThat(ok.rowSlice(0, 1).data().byteSize()).isEqualTo(144);
        try (Arena arena = Arena.ofConfined()) {
            Tensor src = Tensor.ofFloats("model.layers.0.mlp.experts.3.down_proj.weight", new float[128 * 64], 128, 64);
            assertThatThrownBy(() -> Quantizer.quantize(src, DType.Q4_K, arena))
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("'model.layers.0.mlp.experts.3.down_proj.weight'").hasMessageContaining("Q4_K")
                    .hasMessageContaining("64 is not a multiple of 256");
        }
    }

    @Test
    void q8_0Layout() {
        float[] x = new float[32];
        for (int i = 0; i < 32; i++) {
            x[i] = (i - 10) * 0.25f;
        }
        x[7] = -6.35f; // largest magnitude: d = 6.35 / 127 = 0.05
        MemorySegment b = MemorySegment.ofArray(new byte[34]);
        Quantizer.quantizeRow(x, 0, 32, DType.Q8_0, b, 0);
        float d = 6.35f / 127f;
        assertThat(b.get(Tensor.I16_LE, 0)).isEqualTo(Float.floatToFloat16(d));
        for (int i = 0; i < 32; i++) {
            float v = x[i] / d;
            int want = (int) Math.copySign(Math.floor(Math.abs(v) + 0.5), v); // C roundf
            assertThat((int) at(b, 2 + i)).as("q[%d]", i).isEqualTo(want);
        }
        assertThat((int) at(b, 2 + 7)).isEqualTo(-127);
    }

    @Test
    void q4_0LayoutLowNibblesFirstHalf() {
        float[] x = new float[32];
        for (int i = 0; i < 32; i++) {
            x[i] = (i % 15 - 7) * 0.5f; // in [-3.5, 3.5]
        }
        x[20] = -4f; // largest magnitude, negative: d = -4 / -8 = 0.5, and x[20] -> q = 0
        MemorySegment b = MemorySegment.ofArray(new byte[18]);
        Quantizer.quantizeRow(x, 0, 32, DType.Q4_0, b, 0);
        assertThat(f16(b, 0)).isEqualTo(0.5f);
        for (int j = 0; j < 16; j++) {
            int lo = at(b, 2 + j) & 15;
            int hi = (at(b, 2 + j) >> 4) & 15;
            assertThat(lo).as("element %d", j).isEqualTo(Math.min(15, (int) (x[j] / 0.5f + 8.5f)));
            assertThat(hi).as("element %d", j + 16).isEqualTo(Math.min(15, (int) (x[j + 16] / 0.5f + 8.5f)));
        }
        assertThat(at(b, 2 + 4) & 0xF0).isZero(); // x[20] is the high nibble of byte 4
        float[] y = new float[32];
        Quantizer.dequantizeRow(b, 0, DType.Q4_0, y, 0, 32);
        for (int i = 0; i < 32; i++) {
            // every x here is a multiple of d in [-8d, 7d]: exact round trip
            assertThat(y[i]).as("element %d", i).isEqualTo(x[i]);
        }
    }

    /** Q4_K decoded by hand from a block built by hand: ggml's get_scale_min_k4 and nibble order. */
    @Test
    void q4_KLayoutFromAHandBuiltBlock() {
        int[] sc = {1, 63, 17, 32, 5, 48, 60, 33};
        int[] mn = {0, 62, 9, 40, 63, 16, 1, 35};
        byte[] blk = new byte[144];
        short d = Float.floatToFloat16(0.01f);
        short dmin = Float.floatToFloat16(0.002f);
        blk[0] = (byte) d;
        blk[1] = (byte) (d >> 8);
        blk[2] = (byte) dmin;
        blk[3] = (byte) (dmin >> 8);
        // 12 bytes: bytes 0-3 = sc[0..3] + top bits of sc[4..7]; 4-7 = mn[0..3] + top bits of mn[4..7];
        // 8-11 = low 4 bits of sc[4..7] | low 4 bits of mn[4..7] << 4.
        for (int j = 0; j < 4; j++) {
            blk[4 + j] = (byte) (sc[j] | (sc[j + 4] >> 4) << 6);
            blk[4 + 4 + j] = (byte) (mn[j] | (mn[j + 4] >> 4) << 6);
            blk[4 + 8 + j] = (byte) ((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
        }
        int[] q = new int[256];
        SplittableRandom r = new SplittableRandom(3);
        for (int i = 0; i < 256; i++) {
            q[i] = r.nextInt(16);
        }
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                blk[16 + 32 * c + l] = (byte) (q[64 * c + l] | q[64 * c + 32 + l] << 4);
            }
        }
        MemorySegment s = MemorySegment.ofArray(blk);
        float[] y = new float[256];
        Quantizer.dequantizeRow(s, 0, DType.Q4_K, y, 0, 256);
        Tensor t = new Tensor("k", s, DType.Q4_K, new long[] {256});
        for (int i = 0; i < 256; i++) {
            int sub = i / 32;
            float want = Float.float16ToFloat(d) * sc[sub] * q[i] - Float.float16ToFloat(dmin) * mn[sub];
            assertThat(y[i]).as("element %d", i).isEqualTo(want);
            assertThat(t.getFloat(i)).isEqualTo(want);
        }
    }

    @Test
    void roundTripErrorPerFormat() {
        SplittableRandom r = new SplittableRandom(5);
        int rows = 64;
        int cols = 512;
        float[] x = TestTensors.gaussian(r, rows * cols, 0.02f);
        // a few outliers, as real weights have
        for (int i = 0; i < 40; i++) {
            x[r.nextInt(x.length)] *= 8;
        }
        Tensor src = Tensor.ofFloats("w", x, rows, cols);
        // RMS error relative to the RMS weight: Q8_0 ~0.3-0.5%, 4-bit formats ~8-12%.
        double[] maxRel = {0.008, 0.13, 0.10};
        try (Arena arena = Arena.ofConfined()) {
            double q40 = 0;
            double q4k = 0;
            for (int f = 0; f < QUANTIZED.length; f++) {
                DType dt = QUANTIZED[f];
                Tensor q = Quantizer.quantize(src, dt, arena);
                assertThat(q.data().byteSize()).isEqualTo(dt.bytesFor((long) rows * cols));
                float[] y = new float[rows * cols];
                long rowBytes = dt.bytesFor(cols);
                for (int row = 0; row < rows; row++) {
                    Quantizer.dequantizeRow(q.data(), row * rowBytes, dt, y, row * cols, cols);
                }
                double se = 0;
                double ss = 0;
                for (int i = 0; i < x.length; i++) {
                    assertThat(q.getFloat(i)).isEqualTo(y[i]);
                    se += (y[i] - x[i]) * (double) (y[i] - x[i]);
                    ss += x[i] * (double) x[i];
                }
                double rel = Math.sqrt(se / ss);
                assertThat(rel).as("%s rms relative error", dt).isLessThan(maxRel[f]);
                // Per-block bound for the 32-weight formats: |x - y| <= d / 2 (Q8_0) or d (Q4_0, clamped top),
                // with d = max|x| / 127 or / 8, plus the f16 rounding of d.
                if (dt != DType.Q4_K) {
                    for (int blk = 0; blk < x.length / 32; blk++) {
                        float amax = 0;
                        for (int i = 0; i < 32; i++) {
                            amax = Math.max(amax, Math.abs(x[blk * 32 + i]));
                        }
                        double d = dt == DType.Q8_0 ? amax / 127.0 : amax / 8.0;
                        double bound = (dt == DType.Q8_0 ? 0.5 : 1.0) * d * (1 + 1e-3) + (dt == DType.Q8_0 ? 127 : 8) * d * 0x1p-11;
                        for (int i = 0; i < 32; i++) {
                            assertThat((double) Math.abs(y[blk * 32 + i] - x[blk * 32 + i])).isLessThanOrEqualTo(bound);
                        }
                    }
                }
                if (dt == DType.Q4_0) {
                    q40 = rel;
                }
                if (dt == DType.Q4_K) {
                    q4k = rel;
                }
            }
            // The sub-block scales and mins of Q4_K buy accuracy over Q4_0 at the same 4.5 bits.
            assertThat(q4k).isLessThan(q40);
        }
    }

    @Test
    void zeroAndConstantBlocks() {
        for (DType dt : QUANTIZED) {
            int n = dt.blockSize();
            MemorySegment b = MemorySegment.ofArray(new byte[dt.blockBytes()]);
            float[] y = new float[n];
            Quantizer.quantizeRow(new float[n], 0, n, dt, b, 0);
            Quantizer.dequantizeRow(b, 0, dt, y, 0, n);
            for (float v : y) {
                assertThat(v == 0f).as("%s zeros (Q4_0's d = 0 / -8 is -0, as in ggml)", dt).isTrue();
            }
            float[] c = new float[n];
            Arrays.fill(c, -0.75f);
            Quantizer.quantizeRow(c, 0, n, dt, b, 0);
            Quantizer.dequantizeRow(b, 0, dt, y, 0, n);
            for (float v : y) {
                assertThat((double) v).as("%s constant", dt).isCloseTo(-0.75, org.assertj.core.data.Offset.offset(0.75 * 2e-3));
            }
        }
    }

    @Test
    void quantizesFromEveryPlainDtype() {
        SplittableRandom r = new SplittableRandom(8);
        try (Arena arena = Arena.ofConfined()) {
            for (DType from : TestTensors.FLOATS) {
                Tensor w = TestTensors.weight(arena, r, from, 3, 256, 0.1f);
                float[] wf = w.toFloatArray();
                Tensor viaFloats = Quantizer.quantize(Tensor.ofFloats("w", wf, 3, 256), DType.Q4_K, arena);
                for (DType dt : QUANTIZED) {
                    Tensor q = Quantizer.quantize(w, dt, arena);
                    Tensor q2 = Quantizer.quantize(Tensor.ofFloats("w", wf, 3, 256), dt, arena);
                    assertThat(q.data().mismatch(q2.data())).as("%s from %s", dt, from).isEqualTo(-1);
                }
                assertThat(viaFloats.data().byteSize()).isEqualTo(3 * 144);
            }
        }
    }

    @Test
    void nonFiniteScaleIsFound() {
        MemorySegment s = MemorySegment.ofArray(new byte[3 * 34]);
        Tensor t = new Tensor("t", s, DType.Q8_0, new long[] {96});
        assertThat(Quantizer.firstNonFinite(t)).isEqualTo(-1);
        s.set(Tensor.I16_LE, 34, Float.floatToFloat16(Float.NaN));
        assertThat(Quantizer.firstNonFinite(t)).isEqualTo(32);
    }
}
