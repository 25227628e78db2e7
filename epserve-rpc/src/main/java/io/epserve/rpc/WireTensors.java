package io.epserve.rpc;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.epserve.rpc.v1.WireDType;
import io.epserve.tensor.Numerics;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import io.epserve.moe.ExactCombine;

/**
 * The wire layout of tensors in the expert protocol (DESIGN.md §3.9; the same diagram is in
 * {@code expert.proto}): a row-major matrix {@code [rows × cols]} of little-endian values in the
 * wire dtype, nothing before or after.
 * <pre>
 *   F32:  byte (r·cols + c)·4 .. +3   = float32 bits of m[r, c]
 *   BF16: byte (r·cols + c)·2 .. +1   = upper half of the float32 bits, rounded to nearest even
 *
 *   ┌──────── row 0 ────────┬──────── row 1 ────────┬─ ··· ─┐
 *   │ m[0,0] m[0,1] … m[0,C-1] │ m[1,0] …              │       │   length = rows·cols·size, exactly
 *   └───────────────────────┴───────────────────────┴─ ··· ─┘
 * </pre>
 * Encoding makes the one copy a float[] → bytes needs and hands the array to protobuf without a
 * second one ({@link UnsafeByteOperations#unsafeWrap}); decoding reads the message's bytes through a
 * read-only view, straight into the float[] the compute needs.
 */
public final class WireTensors {
    private WireTensors() {}

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Bytes per value; refuses UNSPECIFIED and unknown values. */
    public static int bytesPerValue(WireDType dtype) {
        return switch (dtype) {
            case WIRE_DTYPE_F32, WIRE_DTYPE_F32_EXACT -> 4;
            case WIRE_DTYPE_BF16 -> 2;
            default -> throw new IllegalArgumentException("unsupported wire dtype " + dtype + " (F32 or BF16)");
        };
    }

    /** Whether a dtype can carry tensors (F32 or BF16). */
    public static boolean isSupported(WireDType dtype) {
        return dtype == WireDType.WIRE_DTYPE_F32 || dtype == WireDType.WIRE_DTYPE_BF16 || dtype == WireDType.WIRE_DTYPE_F32_EXACT;
    }

    /** {@code count} floats of {@code src} from {@code offset}, in the wire layout; the array is not copied again. */
    public static ByteString encode(float[] src, int offset, int count, WireDType dtype) {
        byte[] bytes = new byte[count * bytesPerValue(dtype)];
        MemorySegment dst = MemorySegment.ofArray(bytes);
        if (dtype != WireDType.WIRE_DTYPE_BF16) {
            MemorySegment.copy(src, offset, dst, F32_LE, 0, count);
        } else {
            for (int i = 0; i < count; i++) {
                dst.set(I16_LE, 2L * i, Numerics.floatToBf16(src[offset + i]));
            }
        }
        return UnsafeByteOperations.unsafeWrap(bytes);
    }

    /**
     * Decodes exactly {@code count} values into {@code dst}; the caller has checked
     * {@code bytes.size() == count · bytesPerValue(dtype)}.
     */
    public static void decode(ByteString bytes, WireDType dtype, float[] dst, int count) {
        int size = bytesPerValue(dtype);
        if (bytes.size() != (long) count * size) {
            throw new IllegalArgumentException(bytes.size() + " bytes for " + count + " values of " + size + " bytes");
        }
        MemorySegment src = MemorySegment.ofBuffer(bytes.asReadOnlyByteBuffer());
        if (dtype != WireDType.WIRE_DTYPE_BF16) {
            MemorySegment.copy(src, F32_LE, 0, dst, 0, count);
        } else {
            for (int i = 0; i < count; i++) {
                dst[i] = Numerics.bf16ToFloat(src.get(I16_LE, 2L * i));
            }
        }
    }

    private static final ValueLayout.OfInt I32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong I64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /**
     * Exact partial sums ({@link WireDType#WIRE_DTYPE_F32_EXACT}): {@code count} integers as int32
     * when every one fits, else as int64; the receiver tells them apart by the byte count.
     */
    public static ByteString encodeExact(long[] src, int count) {
        boolean narrow = ExactCombine.fitsInt(src, count);
        byte[] bytes = new byte[count * (narrow ? 4 : 8)];
        MemorySegment dst = MemorySegment.ofArray(bytes);
        if (narrow) {
            for (int i = 0; i < count; i++) {
                dst.set(I32_LE, 4L * i, (int) src[i]);
            }
        } else {
            MemorySegment.copy(src, 0, dst, I64_LE, 0, count);
        }
        return UnsafeByteOperations.unsafeWrap(bytes);
    }

    /** Whether {@code bytes} is a valid length for {@code count} exact partial sums (4 or 8 bytes each). */
    public static boolean isExactLength(ByteString bytes, int count) {
        return bytes.size() == 4L * count || bytes.size() == 8L * count;
    }

    /** Decodes {@code count} exact partial sums (int32 or int64, by the byte count) into dst. */
    public static void decodeExact(ByteString bytes, long[] dst, int count) {
        if (!isExactLength(bytes, count)) {
            throw new IllegalArgumentException(bytes.size() + " bytes for " + count + " exact partial sums of 4 or 8 bytes");
        }
        MemorySegment src = MemorySegment.ofBuffer(bytes.asReadOnlyByteBuffer());
        if (bytes.size() == 4L * count) {
            for (int i = 0; i < count; i++) {
                dst[i] = src.get(I32_LE, 4L * i);
            }
        } else {
            MemorySegment.copy(src, I64_LE, 0, dst, 0, count);
        }
    }

    /** The dtype requests carry for a configured wire dtype: F32 travels with exact partial sums. */
    public static WireDType onTheWire(WireDType configured) {
        return configured == WireDType.WIRE_DTYPE_F32 ? WireDType.WIRE_DTYPE_F32_EXACT : configured;
    }

    /** Index of the first NaN or ±Inf in {@code a[0, count)}, or -1. */
    public static int firstNonFinite(float[] a, int count) {
        for (int i = 0; i < count; i++) {
            if (!Float.isFinite(a[i])) {
                return i;
            }
        }
        return -1;
    }

    /** "F32" / "BF16" for messages. */
    public static String name(WireDType dtype) {
        return switch (dtype) {
            case WIRE_DTYPE_F32 -> "F32";
            case WIRE_DTYPE_F32_EXACT -> "F32 (exact partial sums)";
            case WIRE_DTYPE_BF16 -> "BF16";
            default -> dtype.name();
        };
    }
}
