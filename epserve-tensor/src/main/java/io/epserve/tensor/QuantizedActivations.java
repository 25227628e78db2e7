package io.epserve.tensor;

import java.util.Locale;

/**
 * How a matmul over block-quantized weights (Q8_0, Q4_0, Q4_K) treats its activations: one
 * choice per JVM, the system property {@code epserve.quant-activations}, read and checked once
 * ({@link #configured()}).
 *
 * <ul>
 *   <li>{@link #INT8} (default): each token's activation row is quantized to 8 bits per block of
 *       32 ({@link Int8Activations}), and each weight block meets it in an integer dot product,
 *       as llama.cpp computes its quantized matmuls ({@code vpmaddubsw}/{@code vpmaddwd} on AVX2:
 *       one int-to-float conversion and one fma per 32 weights instead of four of each per 8).
 *       The result is no longer the F32 product of the dequantized matrix: each activation is
 *       rounded to a grid of 1/127 of its block's largest magnitude (llama.cpp's block_q8_0). The
 *       arithmetic is defined by {@link ScalarKernels#dotInt8}, independent of the vector width,
 *       and every m (decode, prefill, batched decode) uses it per token, so batch invariance holds.
 *   <li>{@link #F32}: activations stay float and each weight is decoded exactly
 *       ({@link QuantizedKernels}): bitwise the F32 matmul of the dequantized matrix. Slower;
 *       kept as the reference and for comparisons.
 * </ul>
 *
 * Every process of a deployment must use the same value to compute the same bits: worker
 * processes started by epserve inherit the frontend's {@code epserve.*} properties. MXFP4
 * weights always take the F32 path (they have no integer kernel).
 */
public enum QuantizedActivations {
    INT8("int8"),
    F32("f32");

    /** The system property that selects the scheme. */
    public static final String PROPERTY = "epserve.quant-activations";

    private final String label;

    QuantizedActivations(String label) {
        this.label = label;
    }

    /** The property's value naming this scheme: {@code int8} or {@code f32}. */
    public String label() {
        return label;
    }

    /** The scheme for a property value (case-insensitive), naming the accepted ones when it is unknown. */
    public static QuantizedActivations parse(String value) {
        String v = value.trim().toLowerCase(Locale.ROOT);
        for (QuantizedActivations a : values()) {
            if (a.label.equals(v)) {
                return a;
            }
        }
        throw new IllegalArgumentException("system property " + PROPERTY + " must be int8 or f32, got '" + value + "'");
    }

    /**
     * This JVM's scheme: {@link #PROPERTY}, default {@link #INT8}, read at the first call. An
     * unknown value fails every call with an error naming the property (never a half-initialized
     * class), so the first quantized matmul, or a command's start-up check, reports it.
     */
    public static QuantizedActivations configured() {
        QuantizedActivations c = configured;
        if (c == null) {
            String v = System.getProperty(PROPERTY);
            c = v == null || v.isBlank() ? INT8 : parse(v);
            // a benign race: every thread computes the same constant
            configured = c;
        }
        return c;
    }

    private static QuantizedActivations configured;
}
