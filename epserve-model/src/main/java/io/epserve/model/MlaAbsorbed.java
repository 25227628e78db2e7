package io.epserve.model;

import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * One MLA layer's kv_b_proj split for attention over the compressed cache, as DeepSeek's
 * reference inference absorbs it: scores are {@code (W_UK,h^T q_nope,h) · latent + q_pe,h · k_pe}
 * and each head's output is {@code W_UV,h (Σ p · latent)}, so keys and values are never expanded.
 *
 * <p>kv_b_proj is {@code [heads × (nope + v), kvLora]}: for head h, rows {@code h(nope+v) ..
 * +nope} are W_UK,h and the next v rows W_UV,h. W_UV,h is used as stored (a row slice);
 * W_UK,h^T is a transposed copy {@code [kvLora, nope]} per head, made once in the stored
 * element type (a copy, so exact).
 */
record MlaAbsorbed(Tensor[] keyUpT, Tensor[] valueUp) {

    static MlaAbsorbed of(Tensor kvB, int heads, ModelConfig.Mla m) {
        int nope = m.qkNopeDim();
        int v = m.vHeadDim();
        int r = m.kvLoraRank();
        Tensor[] keyUpT = new Tensor[heads];
        Tensor[] valueUp = new Tensor[heads];
        for (int h = 0; h < heads; h++) {
            long base = (long) h * (nope + v);
            float[] t = new float[r * nope];
            for (int d = 0; d < nope; d++) {
                for (int c = 0; c < r; c++) {
                    t[c * nope + d] = kvB.getFloat((base + d) * r + c);
                }
            }
            keyUpT[h] = stored(kvB.name() + ".absorbed_k[" + h + "]", t, kvB.dtype(), r, nope);
            valueUp[h] = kvB.rowSlice(base + nope, base + nope + v);
        }
        return new MlaAbsorbed(keyUpT, valueUp);
    }

    /** {@code values} in {@code dtype} (they came from a tensor of that type, so nothing rounds). */
    private static Tensor stored(String name, float[] values, DType dtype, int rows, int cols) {
        ValueLayout.OfShort half = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        return switch (dtype) {
            case BF16, F16 -> {
                MemorySegment seg = Arena.ofAuto().allocate(2L * values.length);
                for (int i = 0; i < values.length; i++) {
                    short s = dtype == DType.BF16 ? (short) (Float.floatToRawIntBits(values[i]) >>> 16) : Float.floatToFloat16(values[i]);
                    seg.setAtIndex(half, i, s);
                }
                yield new Tensor(name, seg, dtype, new long[] {rows, cols});
            }
            default -> Tensor.ofFloats(name, values, rows, cols);
        };
    }
}
