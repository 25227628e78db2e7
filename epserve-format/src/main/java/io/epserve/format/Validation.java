package io.epserve.format;

import io.epserve.tensor.Quantizer;
import io.epserve.tensor.Tensor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Collection;

/** Checks that stored weights are finite: a NaN or ±Inf in a weight poisons every token it touches. */
public final class Validation {
    private Validation() {}

    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final long CHUNK = 8L << 20;

    /**
     * Scans each tensor; the first non-finite value fails with a message naming the file and the
     * tensor. Reports progress in bytes.
     */
    public static void requireFinite(Checkpoint ckpt, Collection<String> names, Progress progress) {
        long total = 0;
        for (String n : names) {
            total += ckpt.entry(n).end() - ckpt.entry(n).begin();
        }
        progress.start("validating " + ckpt.dir().getFileName(), total);
        try {
            names.parallelStream().forEach(n -> {
                Tensor t = ckpt.tensor(n);
                long bad = firstNonFinite(t, progress);
                if (bad >= 0) {
                    throw new CheckpointException(ckpt.fileOf(n) + ": tensor '" + n + "' has a non-finite value ("
                            + t.getFloat(bad) + ") at element " + bad);
                }
            });
        } finally {
            progress.done();
        }
    }

    /** Index of the first NaN/Inf element, or -1. */
    public static long firstNonFinite(Tensor t, Progress progress) {
        MemorySegment s = t.data();
        long bytes = s.byteSize();
        if (t.dtype().quantized()) {
            // finite block scales <=> finite weights
            long bad = Quantizer.firstNonFinite(t);
            progress.advance(bytes);
            return bad;
        }
        // exponent bits of each lane packed in a long: all ones means Inf or NaN
        long mask = switch (t.dtype()) {
            case F32 -> 0x7F8000007F800000L;
            case BF16 -> 0x7F807F807F807F80L;
            case F16 -> 0x7C007C007C007C00L;
            case Q8_0, Q4_0, Q4_K, MXFP4 -> throw new IllegalStateException("quantized: handled above");
        };
        int lane = t.dtype().bytes();
        long done = 0;
        while (done < bytes) {
            long end = Math.min(bytes, done + CHUNK);
            long i = done;
            for (; i + 8 <= end; i += 8) {
                long x = s.get(LONG, i) & mask;
                if (hasFullLane(x, mask, lane)) {
                    break;
                }
            }
            // the slow path locates the exact element (also handles the unaligned tail)
            for (long e = i / lane; e * lane < end; e++) {
                if (!Float.isFinite(t.getFloat(e))) {
                    return e;
                }
            }
            progress.advance(end - done);
            done = end;
        }
        return -1;
    }

    private static boolean hasFullLane(long masked, long mask, int lane) {
        if (lane == 4) {
            return (masked & 0xFFFFFFFFL) == (mask & 0xFFFFFFFFL) || (masked >>> 32) == (mask >>> 32);
        }
        long t = masked ^ mask; // a lane is zero iff all its exponent bits were set
        return ((t - 0x0001000100010001L) & ~t & 0x8000800080008000L) != 0;
    }
}
