package io.epserve.tensor;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Objects;

/**
 * The optional native kernels for quantized weights: the exact float matvec (Q8_0, Q4_0, Q4_K,
 * one token) and the int8-activation products ({@link QuantizedActivations#INT8}: activation
 * quantization, and Q8_0 / Q4_0 / Q4_K weights against m quantized tokens). A small
 * C library ({@code src/main/c/epserve_kernels.c}, built by this module's build with the system C
 * compiler, shipped inside the jar) called through the foreign function interface.
 *
 * <p>Why: on an AVX2 machine the JIT's code for decoding quantized blocks in registers runs at
 * about a quarter of the same instruction sequence compiled from C, so quantized decode was
 * compute-bound and slower than BF16 despite reading half the bytes. The library computes
 * bitwise what {@link QuantizedKernels} computes with 8 float lanes (same exact decoding, same
 * per-lane fma order, same lane-sum tree), and the int8 products and activation quantization
 * bitwise what {@link ScalarKernels#dotInt8} and {@link Int8Activations#quantizeRow} define, so
 * results, batch invariance and every golden are unchanged by whether it is in use.
 *
 * <p>It is used only where that equality holds and the code can run: Linux on x86-64, a JVM
 * whose preferred float vector has 8 lanes, a CPU with AVX2, FMA and F16C (asked of the library
 * itself), and {@code epserve.kernels} not set to {@code vector} (or {@code scalar}). Anything
 * else (library absent from the jar because no C compiler was present at build time, a temporary
 * directory that cannot be written, another architecture) silently leaves the Vector API
 * kernels in charge; {@link #status()} says which and why.
 */
final class NativeKernels {
    private NativeKernels() {}

    /** The calling convention this class expects of the library (its {@code epserve_native_abi}). */
    private static final int ABI = 2;
    static final String RESOURCE = "native/linux-x86_64/libepserve_kernels.so";
    private static final NativeLibrary LIBRARY = new NativeLibrary(RESOURCE);

    private static final MethodHandle Q8_0;
    private static final MethodHandle Q4_0;
    private static final MethodHandle Q4_K;
    private static final MethodHandle QUANTIZE_I8;
    private static final MethodHandle I8_Q8_0;
    private static final MethodHandle I8_Q4_0;
    private static final MethodHandle I8_Q4_K;
    /** Whether quantized matvecs go to the library. */
    static final boolean ENABLED;
    private static final String STATUS;

    static {
        MethodHandle q8 = null;
        MethodHandle q40 = null;
        MethodHandle q4k = null;
        MethodHandle quantize = null;
        MethodHandle i8q8 = null;
        MethodHandle i8q40 = null;
        MethodHandle i8q4k = null;
        String status;
        try {
            String refusal = LIBRARY.refusal();
            if (refusal != null) {
                status = "Vector API kernels (" + refusal + ")";
            } else {
                SymbolLookup lib = LIBRARY.open();
                Linker linker = Linker.nativeLinker();
                int abi = (int) linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_native_abi"), FunctionDescriptor.of(JAVA_INT)).invokeExact();
                int cpuOk = (int) linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_native_cpu_ok"), FunctionDescriptor.of(JAVA_INT)).invokeExact();
                if (abi != ABI) {
                    status = "Vector API kernels (native library has calling convention " + abi + ", expected " + ABI + ")";
                } else if (cpuOk != 1) {
                    status = "Vector API kernels (this CPU lacks AVX2, FMA or F16C)";
                } else {
                    // Heap arrays (x, y, quantized activations) are passed directly: critical calls
                    // may take them, and these calls are short (one chunk of rows: tens of
                    // microseconds for a token, about a millisecond for a prefill of 128).
                    FunctionDescriptor matvec = FunctionDescriptor.ofVoid(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
                    Linker.Option heap = Linker.Option.critical(true);
                    q8 = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matvec_q8_0"), matvec, heap);
                    q40 = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matvec_q4_0"), matvec, heap);
                    q4k = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matvec_q4_k"), matvec, heap);
                    quantize = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_quantize_i8"),
                            FunctionDescriptor.ofVoid(ADDRESS, JAVA_INT, ADDRESS, ADDRESS, ADDRESS), heap);
                    // (q, d, sum, m, k, w, rowBytes, blocks, y, n, r0, r1)
                    FunctionDescriptor int8 = FunctionDescriptor.ofVoid(ADDRESS, ADDRESS, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG,
                            JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT);
                    i8q8 = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matmul_i8_q8_0"), int8, heap);
                    i8q40 = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matmul_i8_q4_0"), int8, heap);
                    i8q4k = linker.downcallHandle(NativeLibrary.symbol(lib, RESOURCE, "epserve_matmul_i8_q4_k"), int8, heap);
                    status = "native AVX2 kernels (" + RESOURCE + ")";
                }
            }
        } catch (Throwable t) {
            // Any failure to load or link leaves the Vector API kernels in charge: they are
            // always correct, only slower.
            q8 = null;
            q40 = null;
            q4k = null;
            quantize = null;
            i8q8 = null;
            i8q40 = null;
            i8q4k = null;
            status = "Vector API kernels (native library not usable: " + t + ")";
        }
        Q8_0 = q8;
        Q4_0 = q40;
        Q4_K = q4k;
        QUANTIZE_I8 = quantize;
        I8_Q8_0 = i8q8;
        I8_Q4_0 = i8q40;
        I8_Q4_K = i8q4k;
        ENABLED = q8 != null;
        STATUS = status;
    }

    /** Which kernels run quantized matvecs in this JVM, and why (for benchmarks and logs). */
    static String status() {
        return STATUS;
    }

    /** Whether {@link #matvec} takes this dtype. */
    static boolean handles(DType dt) {
        return ENABLED && (dt == DType.Q8_0 || dt == DType.Q4_0 || dt == DType.Q4_K);
    }

    /**
     * Rows {@code [r0, r1)} of {@code y = w x} for one token (as {@link QuantizedKernels#matvecQuantized}):
     * x holds k floats at xOff, w is seg (rows of whole blocks of dt), y[yOff + r] is written.
     * Every range is checked here: the C code checks none.
     */
    static void matvec(float[] x, int xOff, MemorySegment seg, DType dt, int k, float[] y, int yOff, int r0, int r1) {
        if (k % dt.blockSize() != 0) {
            throw new IllegalArgumentException(dt + ": rows of " + k + " weights are not whole blocks of " + dt.blockSize());
        }
        long rowBytes = dt.bytesFor(k);
        if (r0 < 0 || r1 < r0 || (long) r1 * rowBytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException("rows [" + r0 + ", " + r1 + ") of " + rowBytes + " bytes in a segment of " + seg.byteSize());
        }
        Objects.checkFromIndexSize(xOff, k, x.length);
        Objects.checkFromIndexSize(yOff, r1, y.length);
        if (r0 == r1) {
            return;
        }
        MemorySegment xs = MemorySegment.ofArray(x).asSlice(4L * xOff);
        MemorySegment ys = MemorySegment.ofArray(y).asSlice(4L * yOff);
        int blocks = k / dt.blockSize();
        try {
            switch (dt) {
                case Q8_0 -> Q8_0.invokeExact(xs, seg, rowBytes, blocks, ys, r0, r1);
                case Q4_0 -> Q4_0.invokeExact(xs, seg, rowBytes, blocks, ys, r0, r1);
                case Q4_K -> Q4_K.invokeExact(xs, seg, rowBytes, blocks, ys, r0, r1);
                default -> throw new IllegalArgumentException(dt + " has no native matvec");
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /**
     * {@link Int8Activations#quantizeRow} of {@code blocks} blocks of x from xOff into q, d and
     * sum (from index 0): the same bytes, scales and sums. Ranges are checked here.
     */
    static void quantizeInt8(float[] x, int xOff, int blocks, byte[] q, float[] d, int[] sum) {
        int values = Math.multiplyExact(blocks, Int8Activations.BLOCK);
        Objects.checkFromIndexSize(xOff, values, x.length);
        Objects.checkFromIndexSize(0, values, q.length);
        Objects.checkFromIndexSize(0, blocks, d.length);
        Objects.checkFromIndexSize(0, blocks, sum.length);
        if (blocks == 0) {
            return;
        }
        try {
            QUANTIZE_I8.invokeExact(MemorySegment.ofArray(x).asSlice(4L * xOff), blocks, MemorySegment.ofArray(q),
                    MemorySegment.ofArray(d), MemorySegment.ofArray(sum));
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    /**
     * Rows {@code [r0, r1)} of {@code y[t, r] = dotInt8(token t, weight row r)} for the m tokens
     * quantized in q (t's values at t·k), d and sum (t's scales and block sums at t·k/32), as
     * {@link Int8Kernels#rowsVector}: y[yOff + t·n + r]. Every range is checked here: the C code
     * checks none.
     */
    static void matmulInt8(byte[] q, float[] d, int[] sum, int m, int k, MemorySegment seg, DType dt, int n, float[] y, int yOff,
                           int r0, int r1) {
        if (k % dt.blockSize() != 0 || k % Int8Activations.BLOCK != 0) {
            throw new IllegalArgumentException(dt + ": rows of " + k + " weights are not whole blocks of " + dt.blockSize());
        }
        long rowBytes = dt.bytesFor(k);
        if (r0 < 0 || r1 < r0 || r1 > n || (long) r1 * rowBytes > seg.byteSize()) {
            throw new IndexOutOfBoundsException("rows [" + r0 + ", " + r1 + ") of " + n + " rows of " + rowBytes
                    + " bytes in a segment of " + seg.byteSize());
        }
        Objects.checkFromIndexSize(0, Math.multiplyExact(m, k), q.length);
        Objects.checkFromIndexSize(0, m * (k / Int8Activations.BLOCK), d.length);
        Objects.checkFromIndexSize(0, m * (k / Int8Activations.BLOCK), sum.length);
        Objects.checkFromIndexSize(yOff, Math.multiplyExact(m, n), y.length);
        if (r0 == r1 || m == 0) {
            return;
        }
        MemorySegment qs = MemorySegment.ofArray(q);
        MemorySegment ds = MemorySegment.ofArray(d);
        MemorySegment ss = MemorySegment.ofArray(sum);
        MemorySegment ys = MemorySegment.ofArray(y).asSlice(4L * yOff);
        int blocks = k / dt.blockSize();
        try {
            switch (dt) {
                case Q8_0 -> I8_Q8_0.invokeExact(qs, ds, ss, m, k, seg, rowBytes, blocks, ys, n, r0, r1);
                case Q4_0 -> I8_Q4_0.invokeExact(qs, ds, ss, m, k, seg, rowBytes, blocks, ys, n, r0, r1);
                case Q4_K -> I8_Q4_K.invokeExact(qs, ds, ss, m, k, seg, rowBytes, blocks, ys, n, r0, r1);
                default -> throw new IllegalArgumentException(dt + " has no native int8-activation product");
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
