package io.epserve.tensor;

/** bfloat16 as the upper 16 bits of a float32: conversions both ways, rounding to nearest even. */
public final class Bf16 {
    private Bf16() {}

    public static short fromFloat(float f) {
        int b = Float.floatToRawIntBits(f);
        if ((b & 0x7fffffff) > 0x7f800000) {
            return (short) ((b >>> 16) | 0x40); // NaN stays a (quiet) NaN
        }
        return (short) ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
    }

    public static float toFloat(short h) {
        return Float.intBitsToFloat(h << 16);
    }

    /** {@code dst[dOff..dOff+n) = bf16(src[sOff..sOff+n))}. */
    public static void store(float[] src, int sOff, short[] dst, int dOff, int n) {
        for (int i = 0; i < n; i++) {
            dst[dOff + i] = fromFloat(src[sOff + i]);
        }
    }

    /** {@code dst[dOff..dOff+n) = float(src[sOff..sOff+n))}. */
    public static void load(short[] src, int sOff, float[] dst, int dOff, int n) {
        for (int i = 0; i < n; i++) {
            dst[dOff + i] = Float.intBitsToFloat(src[sOff + i] << 16);
        }
    }
}
