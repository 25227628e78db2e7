package io.epserve.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * A read-only view of a stored tensor: a {@link MemorySegment} (usually a slice of a mapped
 * checkpoint file), its dtype and its shape, row-major, little-endian. Never a copy: kernels
 * compute on the stored dtype directly (DESIGN.md §3.3).
 *
 * <p>A 2-D tensor {@code [rows, cols]} is a linear layer's weight in PyTorch's convention:
 * {@code rows} = output features, {@code cols} = input features. A quantized tensor stores each
 * row as whole blocks ({@link Quantizer}), so its last dimension is a multiple of the block size
 * and {@link #select}/{@link #rowSlice} cut between whole rows.
 */
public record Tensor(String name, MemorySegment data, DType dtype, long[] shape) {

    static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public Tensor {
        data = oneSegmentClass(data);
        shape = shape.clone();
        long n = 1;
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException(name + ": negative dimension in " + Arrays.toString(shape));
            }
            n *= d;
        }
        if (dtype.quantized()) {
            Quantizer.requireWholeBlockRows(name, shape, dtype);
        }
        if (data.byteSize() != dtype.bytesFor(n)) {
            throw new IllegalArgumentException(name + ": " + data.byteSize() + " bytes for shape "
                    + Arrays.toString(shape) + " of " + dtype + " (needs " + dtype.bytesFor(n) + ")");
        }
    }

    /**
     * A mapped segment as a plain native segment over the same memory, with the same scope (so
     * the same lifetime checks) and the same read-only mode; other segments unchanged.
     *
     * <p>Why: the JIT compiles the Vector API's segment loads for the segment classes it has seen
     * at them, and that profile is one for the whole JVM. A mapped file and an arena allocation
     * are two classes: a GGUF model, whose q and k are arena copies (their rope permutation
     * undone) next to mapped weights, decoded at 1.6× the CPU time per token of the same weights
     * from safetensors, and a safetensors model whose kernels had once seen an arena tensor at
     * 2.7×. Viewing every off-heap tensor through one class keeps the loads monomorphic.
     * Where native access is denied (it is a restricted method), the segment stays as it is:
     * slower, never wrong.
     */
    static MemorySegment oneSegmentClass(MemorySegment data) {
        if (!data.isMapped()) {
            return data;
        }
        try {
            return data.reinterpret(data.byteSize());
        } catch (IllegalCallerException e) {
            return data;
        }
    }

    /** A tensor over a heap float array, for tests and small computed tensors. */
    public static Tensor ofFloats(String name, float[] values, long... shape) {
        return new Tensor(name, MemorySegment.ofArray(values), DType.F32, shape);
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public long dim(int i) {
        return shape[i];
    }

    public long size() {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    /** Rows of a 2-D tensor (output features). */
    public int rows() {
        requireRank(2);
        return Math.toIntExact(shape[0]);
    }

    /** Columns of a 2-D tensor (input features). */
    public int cols() {
        requireRank(2);
        return Math.toIntExact(shape[1]);
    }

    public boolean hasShape(long... expected) {
        return Arrays.equals(shape, expected);
    }

    /** Element {@code i} (flat index) widened (or dequantized) to float; for scalar code paths and tests. */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> data.get(F32_LE, i * 4);
            case BF16 -> Numerics.bf16ToFloat(data.get(I16_LE, i * 2));
            case F16 -> Numerics.f16ToFloat(data.get(I16_LE, i * 2));
            case Q8_0, Q4_0, Q4_K, MXFP4 -> Quantizer.dequantize(data, dtype, i);
        };
    }

    /** The sub-tensor at index {@code i} of the first dimension: {@code [d0, d1, ...] -> [d1, ...]}. */
    public Tensor select(long i) {
        if (rank() < 2) {
            throw new IllegalArgumentException(name + ": select needs rank >= 2");
        }
        long[] rest = Arrays.copyOfRange(shape, 1, shape.length);
        long inner = 1;
        for (long d : rest) {
            inner *= d;
        }
        long bytes = dtype.bytesFor(inner);
        return new Tensor(name + "[" + i + "]", data.asSlice(i * bytes, bytes), dtype, rest);
    }

    /** Rows {@code [from, to)} of the first dimension, other dimensions kept. */
    public Tensor rowSlice(long from, long to) {
        long[] s = shape.clone();
        s[0] = to - from;
        long inner = 1;
        for (int d = 1; d < shape.length; d++) {
            inner *= shape[d];
        }
        long bytes = dtype.bytesFor(inner);
        return new Tensor(name + "[" + from + ":" + to + "]", data.asSlice(from * bytes, (to - from) * bytes), dtype, s);
    }

    /** Copies all elements widened to float (small tensors only: norms, biases, tests). */
    public float[] toFloatArray() {
        int n = Math.toIntExact(size());
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = getFloat(i);
        }
        return out;
    }

    private void requireRank(int r) {
        if (shape.length != r) {
            throw new IllegalArgumentException(name + ": expected rank " + r + ", shape is " + Arrays.toString(shape));
        }
    }

    @Override
    public String toString() {
        return name + " " + dtype + Arrays.toString(shape);
    }

    @Override
    public boolean equals(Object o) {
        return this == o;
    }

    @Override
    public int hashCode() {
        return System.identityHashCode(this);
    }
}
