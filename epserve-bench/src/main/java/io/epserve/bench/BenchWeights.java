package io.epserve.bench;

import io.epserve.tensor.DType;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Weight matrices for benchmarks: off-heap, little-endian, small random values (no denormals). */
final class BenchWeights {
    private BenchWeights() {}

    /**
     * Enough copies of an {@code n × k} matrix that together they span at least
     * {@code minBytes}: cycling through them keeps the working set out of the caches (L3 is
     * 32 MiB here, and a 4096² BF16 matrix is exactly that).
     */
    static Tensor[] copies(Arena arena, DType dt, int n, int k, long minBytes) {
        long bytes = dt.bytesFor((long) n * k);
        int count = (int) Math.max(1, (minBytes + bytes - 1) / bytes);
        Tensor[] ts = new Tensor[count];
        for (int c = 0; c < count; c++) {
            ts[c] = matrix(arena, dt, n, k, 1234 + c);
        }
        return ts;
    }

    static Tensor matrix(Arena arena, DType dt, int n, int k, long seed) {
        long count = (long) n * k;
        MemorySegment seg = arena.allocate(dt.bytesFor(count), 64);
        long s = seed * 0x9E3779B97F4A7C15L + 1;
        for (long i = 0; i < count; i++) {
            s = s * 6364136223846793005L + 1442695040888963407L;
            float v = ((s >>> 40) - (1 << 23)) * 0x1p-23f * 0.05f;
            switch (dt) {
                case F32 -> seg.setAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED, i, v);
                case BF16 -> seg.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Numerics.floatToBf16(v));
                case F16 -> seg.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Numerics.floatToF16(v));
            }
        }
        return new Tensor("w" + seed, seg, dt, new long[] {n, k});
    }

    static float[] activations(int count, long seed) {
        float[] x = new float[count];
        long s = seed;
        for (int i = 0; i < count; i++) {
            s = s * 6364136223846793005L + 1442695040888963407L;
            x[i] = ((s >>> 40) - (1 << 23)) * 0x1p-23f;
        }
        return x;
    }
}
