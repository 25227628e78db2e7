package io.epserve.model;

import java.util.Locale;

/** Element type of the KV cache: float32 (the default: exactly the numbers the model computes) or bfloat16 (half the memory). */
public enum KvDtype {
    F32(4),
    BF16(2);

    private final int bytes;

    KvDtype(int bytes) {
        this.bytes = bytes;
    }

    public int bytes() {
        return bytes;
    }

    /** f32 or bf16, any case; anything else is an error naming the accepted values. */
    public static KvDtype parse(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> F32;
            case "bf16", "bfloat16" -> BF16;
            default -> throw new IllegalArgumentException("KV cache dtype must be f32 or bf16, not '" + s + "'");
        };
    }

    @Override
    public String toString() {
        return name().toLowerCase(Locale.ROOT);
    }
}
