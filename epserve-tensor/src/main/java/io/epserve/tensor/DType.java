package io.epserve.tensor;

/**
 * Element types of stored tensors. One enum, one switch from dtype to kernel (DESIGN.md §3.3).
 * Quantized block types arrive with the memory work; their block size is then the unit of
 * {@link #bytesFor(long)}.
 */
public enum DType {
    F32(4, "F32"),
    BF16(2, "BF16"),
    F16(2, "F16");

    private final int bytes;
    private final String safetensorsName;

    DType(int bytes, String safetensorsName) {
        this.bytes = bytes;
        this.safetensorsName = safetensorsName;
    }

    /** Bytes per element. */
    public int bytes() {
        return bytes;
    }

    public long bytesFor(long elements) {
        return elements * bytes;
    }

    /** The dtype string a safetensors header uses. */
    public String safetensorsName() {
        return safetensorsName;
    }

    /** The dtype for a safetensors header string, or null when epserve cannot compute on it. */
    public static DType fromSafetensors(String name) {
        for (DType t : values()) {
            if (t.safetensorsName.equals(name)) {
                return t;
            }
        }
        return null;
    }
}
