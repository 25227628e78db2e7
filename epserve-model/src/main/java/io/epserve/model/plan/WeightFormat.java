package io.epserve.model.plan;

import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * How a weight matrix is stored, for counting bytes: plain floats, or GGUF quantization blocks.
 * A quantized row of n weights is n / blockSize blocks of blockBytes each, laid out along the row
 * (the input dimension), as GGUF defines them:
 * <pre>
 *   Q8_0: 32 weights = f16 scale (2 B) + 32 × int8 (32 B)                         = 34 B
 *   Q4_0: 32 weights = f16 scale (2 B) + 32 × 4-bit (16 B)                        = 18 B
 *   Q4_K: 256 weights = f16 d + f16 dmin (4 B) + 12 B of 6-bit sub-block scales/mins
 *                       + 256 × 4-bit (128 B)                                     = 144 B
 *   MXFP4: 32 weights = E8M0 scale (1 B) + 32 × 4-bit E2M1 (16 B)                 = 17 B  (gpt-oss's experts)
 * </pre>
 * The planner must know these before the kernels exist, so this is its own small enum
 * rather than {@link io.epserve.tensor.DType}.
 */
public enum WeightFormat {
    F32("f32", 1, 4),
    BF16("bf16", 1, 2),
    F16("f16", 1, 2),
    Q8_0("q8_0", 32, 34),
    Q4_0("q4_0", 32, 18),
    Q4_K("q4_k", 256, 144),
    MXFP4("mxfp4", 32, 17);

    private final String label;
    private final int blockSize;
    private final int blockBytes;

    WeightFormat(String label, int blockSize, int blockBytes) {
        this.label = label;
        this.blockSize = blockSize;
        this.blockBytes = blockBytes;
    }

    /** The name the CLI and JSON use: f32, bf16, f16, q8_0, q4_0, q4_k. */
    public String label() {
        return label;
    }

    /** Weights per block (1 for plain floats). */
    public int blockSize() {
        return blockSize;
    }

    public int blockBytes() {
        return blockBytes;
    }

    public boolean quantized() {
        return blockSize > 1;
    }

    /** Storage bits per weight: 32, 16, 8.5, 4.5, 4.5. */
    public double bitsPerWeight() {
        return 8.0 * blockBytes / blockSize;
    }

    /** Whether a row of this length can be stored (a quantized row is a whole number of blocks). */
    public boolean fitsRow(long rowLength) {
        return rowLength % blockSize == 0;
    }

    /** Bytes of a [rows, cols] matrix stored row by row; cols must be a whole number of blocks. */
    public long matrixBytes(long rows, long cols) {
        if (!fitsRow(cols)) {
            throw new IllegalArgumentException(label + " stores rows in blocks of " + blockSize + " weights; a row of " + cols + " is not a whole number of blocks");
        }
        return rows * (cols / blockSize) * blockBytes;
    }

    /** Parses a label (case-insensitive), naming the accepted ones when it is unknown. */
    public static WeightFormat parse(String s) {
        String k = s.trim().toLowerCase(Locale.ROOT);
        for (WeightFormat f : values()) {
            if (f.label.equals(k)) {
                return f;
            }
        }
        throw new IllegalArgumentException("unknown dtype '" + s + "' (use " + labels(values()) + ")");
    }

    static String labels(WeightFormat... formats) {
        return Arrays.stream(formats).map(WeightFormat::label).collect(Collectors.joining(", "));
    }

    @Override
    public String toString() {
        return label;
    }
}
