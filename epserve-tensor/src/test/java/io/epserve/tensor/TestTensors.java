package io.epserve.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

/** Random tensors for kernel tests, stored the way checkpoints are: little-endian, unaligned. */
final class TestTensors {
    private TestTensors() {}

    /** The plain (unquantized) dtypes; quantized ones have their own tests (QuantizedMatmulTest). */
    static final DType[] FLOATS = {DType.F32, DType.BF16, DType.F16};

    /** Odd sizes around vector widths (4, 8, 16 lanes) and loop tiles. */
    static final int[] ODD = {1, 3, 15, 17, 31, 33, 100, 257};

    static float[] gaussian(SplittableRandom r, int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (nextGaussian(r) * scale);
        }
        return a;
    }

    static double nextGaussian(SplittableRandom r) {
        double u = r.nextDouble();
        double v = r.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u)) * Math.cos(2 * Math.PI * v);
    }

    /**
     * A {@code rows × cols} tensor of {@code dt} over an off-heap segment that starts one byte
     * past an aligned address (so every load in the kernels is unaligned), values N(0, scale²)
     * rounded to the dtype.
     */
    static Tensor weight(Arena arena, SplittableRandom r, DType dt, int rows, int cols, float scale) {
        long n = (long) rows * cols;
        long bytes = dt.bytesFor(n);
        MemorySegment seg = arena.allocate(bytes + 1, 64).asSlice(1, bytes);
        for (long i = 0; i < n; i++) {
            float v = (float) (nextGaussian(r) * scale);
            switch (dt) {
                case F32 -> seg.set(Tensor.F32_LE, i * 4, v);
                case BF16 -> seg.set(Tensor.I16_LE, i * 2, Numerics.floatToBf16(v));
                case F16 -> seg.set(Tensor.I16_LE, i * 2, Numerics.floatToF16(v));
            }
        }
        return new Tensor("w", seg, dt, new long[] {rows, cols});
    }

    static Tensor vector(Arena arena, SplittableRandom r, DType dt, int n, float mean, float scale) {
        Tensor t = weight(arena, r, dt, 1, n, scale);
        MemorySegment seg = t.data();
        for (int i = 0; i < n; i++) {
            float v = mean + t.getFloat(i);
            switch (dt) {
                case F32 -> seg.set(Tensor.F32_LE, i * 4L, v);
                case BF16 -> seg.set(Tensor.I16_LE, i * 2L, Numerics.floatToBf16(v));
                case F16 -> seg.set(Tensor.I16_LE, i * 2L, Numerics.floatToF16(v));
            }
        }
        return new Tensor("v", seg, dt, new long[] {n});
    }
}
