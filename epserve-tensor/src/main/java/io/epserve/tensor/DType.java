package io.epserve.tensor;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * Element types of stored tensors. One enum, one switch from dtype to kernel (DESIGN.md §3.3).
 *
 * <p>Plain types store one element in {@link #bytes()} bytes. Quantized types (GGUF's block
 * formats, see {@link Quantizer} for their layouts) store {@link #blockSize()} consecutive
 * elements of a row in one block of {@link #blockBytes()} bytes; {@link #bytesFor(long)} counts
 * whole blocks, and a quantized tensor's rows (its last dimension) must be whole blocks.
 */
public enum DType {
    F32(4, 1, "F32"),
    BF16(2, 1, "BF16"),
    F16(2, 1, "F16"),
    /** 32 weights: f16 scale + 32 × int8. 8.5 bits per weight. */
    Q8_0(34, 32, "Q8_0"),
    /** 32 weights: f16 scale + 32 × 4-bit. 4.5 bits per weight. */
    Q4_0(18, 32, "Q4_0"),
    /** 256 weights: f16 d, f16 dmin, 8 × 6-bit (scale, min) + 256 × 4-bit. 4.5 bits per weight. */
    Q4_K(144, 256, "Q4_K"),
    /**
     * 32 weights: an E8M0 scale byte e + 32 × 4-bit E2M1 (OCP microscaling FP4, as gpt-oss ships
     * its experts); weight = fp4 · 2^(e − 127). 4.25 bits per weight. Block layout as GGUF's
     * MXFP4: byte j of the quants holds weight j (low nibble) and weight j + 16 (high nibble).
     */
    MXFP4(17, 32, "MXFP4");

    private final int blockBytes;
    private final int blockSize;
    private final String safetensorsName;

    DType(int blockBytes, int blockSize, String safetensorsName) {
        this.blockBytes = blockBytes;
        this.blockSize = blockSize;
        this.safetensorsName = safetensorsName;
    }

    /** Bytes per element of a plain type; a quantized type has no whole number of them (use {@link #bytesFor}). */
    public int bytes() {
        if (quantized()) {
            throw new UnsupportedOperationException(this + " stores " + blockSize + " elements in " + blockBytes
                    + " bytes, not whole bytes per element; use bytesFor(elements) and slice whole blocks");
        }
        return blockBytes;
    }

    /** Whether this is a block-quantized type. */
    public boolean quantized() {
        return blockSize > 1;
    }

    /** Elements per block: 1 for plain types, 32 for Q8_0 / Q4_0, 256 for Q4_K. */
    public int blockSize() {
        return blockSize;
    }

    /** Bytes per block (per element for plain types). */
    public int blockBytes() {
        return blockBytes;
    }

    /** Bytes of {@code elements} elements; for a quantized type they must be whole blocks. */
    public long bytesFor(long elements) {
        if (elements % blockSize != 0) {
            throw new IllegalArgumentException(this + " stores elements in blocks of " + blockSize + "; "
                    + elements + " is not a whole number of blocks");
        }
        return elements / blockSize * blockBytes;
    }

    /** The dtype string a safetensors header uses (epserve's own names for the quantized types). */
    public String safetensorsName() {
        return safetensorsName;
    }

    /** The name the CLI uses: f32, bf16, f16, q8_0, q4_0, q4_k. */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
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

    /** Parses a CLI label (case-insensitive), naming the accepted ones when it is unknown. */
    public static DType parse(String label) {
        String k = label.trim().toLowerCase(Locale.ROOT);
        for (DType t : values()) {
            if (t.label().equals(k)) {
                return t;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + label + "' (use "
                + Arrays.stream(values()).map(DType::label).collect(Collectors.joining(", ")) + ")");
    }
}
