package io.epserve.tensor;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.Objects;

/**
 * The optional native matmul for BF16 weights (every m: decode's matvec, the few tokens per
 * expert of a batch, prefill): a small C library ({@code src/main/c/bf16_kernels.c}, built by
 * this module's build with the system C compiler, shipped inside the jar) called through the
 * foreign function interface.
 *
 * <p>Why: the Vector API kernels reach their speed only once C2 has compiled them; until then
 * (the first seconds of every JVM) each vector is a heap object, and a cold {@code generate}
 * prefilled at a sixth of the warm rate. The library runs at full speed from the first call and
 * computes bitwise what {@link DenseKernels} and {@link GroupKernels} compute with 8 float lanes
 * (the one accumulation scheme of {@link VectorKernels}), so results, batch invariance and every
 * golden are unchanged by whether it is in use.
 *
 * <p>It is used where that equality holds and the code can run: Linux on x86-64, a JVM whose
 * preferred float vector has 8 lanes, a CPU with AVX2 and FMA (asked of the library itself), and
 * {@code epserve.kernels} not set to {@code vector} (or {@code scalar}). Anything else leaves the
 * Vector API kernels in charge, silently; {@link #status()} says which and why.
 */
final class NativeBf16Kernels {
    private NativeBf16Kernels() {}

    /** The calling convention this class expects of the library (its {@code epserve_bf16_abi}). */
    private static final int ABI = 2;
    static final String RESOURCE = "native/linux-x86_64/libepserve_bf16.so";
    /**
     * Most multiply-adds per downcall. The calls are critical (they take the heap arrays directly
     * and hold off safepoints meanwhile), so a large matmul is cut into pieces of about a
     * millisecond that a garbage collection can run between.
     */
    static final long MAX_CALL_MACS = 1L << 22;

    private static final MethodHandle MATMUL;
    /** Whether BF16 matmuls go to the library. */
    static final boolean ENABLED;
    private static final String STATUS;

    static {
        MethodHandle matmul = null;
        String status;
        try {
            NativeLibrary library = new NativeLibrary(RESOURCE);
            String refusal = library.refusal();
            if (refusal != null) {
                status = "Vector API kernels (" + refusal + ")";
            } else {
                SymbolLookup lib = library.open();
                Linker linker = Linker.nativeLinker();
                int abi = (int) linker.downcallHandle(symbol(lib, "epserve_bf16_abi"), FunctionDescriptor.of(JAVA_INT)).invokeExact();
                int cpuOk = (int) linker.downcallHandle(symbol(lib, "epserve_bf16_cpu_ok"), FunctionDescriptor.of(JAVA_INT)).invokeExact();
                if (abi != ABI) {
                    status = "Vector API kernels (native library has calling convention " + abi + ", expected " + ABI + ")";
                } else if (cpuOk != 1) {
                    status = "Vector API kernels (this CPU lacks AVX2 or FMA)";
                } else {
                    matmul = linker.downcallHandle(symbol(lib, "epserve_bf16_matmul"),
                            FunctionDescriptor.ofVoid(ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT),
                            Linker.Option.critical(true));
                    status = "native AVX2 kernels (" + RESOURCE + ")";
                }
            }
        } catch (Throwable t) {
            // Any failure to load or link leaves the Vector API kernels in charge: they are
            // always correct, only slower to warm up.
            matmul = null;
            status = "Vector API kernels (native library not usable: " + t + ")";
        }
        MATMUL = matmul;
        ENABLED = matmul != null;
        STATUS = status;
    }

    private static MemorySegment symbol(SymbolLookup lib, String name) {
        return NativeLibrary.symbol(lib, RESOURCE, name);
    }

    /** Which kernels run BF16 matmuls in this JVM, and why (for benchmarks and logs). */
    static String status() {
        return STATUS;
    }

    /** One call in this many runs the Vector API kernels, timed, while they warm up. */
    private static final int PROBE_EVERY = 16;
    /** Timed calls of each kind before the comparison is trusted. */
    private static final int MIN_SAMPLES = 64;

    // Nanoseconds per multiply-add of each kind, smoothed, and sample counts: written by every
    // kernel thread without synchronization. Races only blur a heuristic: both kinds compute
    // the same bits, so which one runs never changes a result.
    private static double nativeNsPerMac;
    private static double vectorNsPerMac;
    private static int nativeSamples;
    private static int vectorSamples;
    private static int calls;
    private static volatile boolean vectorWarm;

    /**
     * Rows {@code [r0, r1)} of a BF16 matmul (as {@link VectorKernels#rows}) by whichever kernels
     * are faster now: the library while the Vector API kernels are cold, with one call in {@link #PROBE_EVERY} sent to
     * them (so that the JIT sees them run and compiles them) and both timed; from the first time
     * the Vector API kernels are as fast per multiply-add, they take over for good.
     */
    static void dispatch(float[] x, int xOff, int m, MemorySegment seg, int n, int k, float[] y, int yOff, int r0, int r1) {
        if (vectorWarm) {
            VectorKernels.vectorRows(x, xOff, m, seg, DType.BF16, n, k, y, yOff, r0, r1);
            return;
        }
        boolean probe = calls++ % PROBE_EVERY == 0;
        long t0 = System.nanoTime();
        if (probe) {
            VectorKernels.vectorRows(x, xOff, m, seg, DType.BF16, n, k, y, yOff, r0, r1);
        } else {
            rows(x, xOff, m, seg, n, k, y, yOff, r0, r1);
        }
        double nsPerMac = (System.nanoTime() - t0) / ((double) m * k * Math.max(1, r1 - r0));
        if (probe) {
            vectorNsPerMac = vectorSamples++ == 0 ? nsPerMac : 0.9 * vectorNsPerMac + 0.1 * nsPerMac;
        } else {
            nativeNsPerMac = nativeSamples++ == 0 ? nsPerMac : 0.9 * nativeNsPerMac + 0.1 * nsPerMac;
        }
        if (vectorSamples >= MIN_SAMPLES && nativeSamples >= MIN_SAMPLES && vectorNsPerMac <= nativeNsPerMac) {
            vectorWarm = true;
        }
    }

    /** Whether BF16 matmuls have gone back to the Vector API kernels for good. */
    static boolean vectorKernelsWarm() {
        return vectorWarm;
    }

    /**
     * Rows {@code [r0, r1)} of {@code y[i, r] = w[r, :] · x[i, :]} for m tokens (as
     * {@link VectorKernels#rows}): x holds m rows of k floats at xOff, seg holds n rows of k BF16
     * weights, y holds m rows of n floats at yOff. Every range is checked here: the C code checks none.
     */
    static void rows(float[] x, int xOff, int m, MemorySegment seg, int n, int k, float[] y, int yOff, int r0, int r1) {
        if (m < 1 || k < 1 || r0 < 0 || r1 < r0 || r1 > n || 2L * n * k > seg.byteSize()) {
            throw new IndexOutOfBoundsException("rows [" + r0 + ", " + r1 + ") of " + n + " × " + k + " BF16 weights in "
                    + seg.byteSize() + " bytes, " + m + " tokens");
        }
        Objects.checkFromIndexSize(xOff, Math.multiplyExact(m, k), x.length);
        Objects.checkFromIndexSize(yOff, Math.multiplyExact(m, n), y.length);
        if (r0 == r1) {
            return;
        }
        MemorySegment xs = HeapSegments.of(x);
        MemorySegment ys = HeapSegments.of(y);
        int step = (int) Math.max(8, MAX_CALL_MACS / ((long) m * k) / 8 * 8);
        try {
            for (int a = r0; a < r1; a += step) {
                MATMUL.invokeExact(xs, xOff, m, seg, n, k, ys, yOff, a, Math.min(r1, a + step));
            }
        } catch (RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }
}
