package io.epserve.tensor;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The quantized decode matvec, native kernels against the Vector API kernels and the exact
 * float-activation scheme against the int8-activation one ({@link QuantizedActivations}),
 * alternately in one JVM (so that a shared machine's load falls on all alike): {@code y = W x}
 * (m = 1) over enough expert-shaped matrices (2816 × 1024, the benchmark model's gate/up) to span
 * 512 MiB, so the weights stream from DRAM, on 1 thread (timed by its CPU time) and 2 (wall
 * time), for each dtype. The int8 columns include quantizing x once per matrix, as a matmul
 * does. Prints weights/s and GB/s of weights per round. It lives in the kernels' package to call
 * every implementation directly.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp epserve-bench/target/benchmarks.jar \
 *     io.epserve.tensor.QuantMatvecAb [rounds] [dtype,...]
 * </pre>
 */
public final class QuantMatvecAb {
    private QuantMatvecAb() {}

    static final int N = 2816;
    static final int K = 1024;

    public static void main(String[] args) throws IOException {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        List<DType> dtypes = new ArrayList<>();
        for (String d : (args.length > 1 ? args[1] : "bf16,q8_0,q4_0,q4_k").split(",")) {
            dtypes.add(DType.parse(d));
        }
        System.out.printf(Locale.ROOT, "native: %s; load average at start: %s%n", NativeKernels.status(), loadAverage());
        if (!NativeKernels.ENABLED) {
            System.out.println("native kernels not in use here: nothing to compare");
            return;
        }
        System.out.println("| round | dtype | threads | f32 act., Vector API Gw/s (GB/s) | f32 act., native | int8 act., Vector API"
                + " | int8 act., native | int8 native / f32 native |");
        System.out.println("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        float[] x = new float[K];
        long s = 7;
        for (int i = 0; i < K; i++) {
            s = s * 6364136223846793005L + 1442695040888963407L;
            x[i] = ((s >>> 40) - (1 << 23)) * 0x1p-23f;
        }
        float[] y = new float[N];
        try (Arena arena = Arena.ofShared(); KernelPool pool1 = new KernelPool(1); KernelPool pool2 = new KernelPool(2)) {
            List<MemorySegment[]> weights = new ArrayList<>();
            for (DType dt : dtypes) {
                weights.add(matrices(arena, dt));
            }
            for (int round = 1; round <= rounds; round++) {
                for (int d = 0; d < dtypes.size(); d++) {
                    DType dt = dtypes.get(d);
                    for (KernelPool pool : new KernelPool[] {pool1, pool2}) {
                        double vector = pass(weights.get(d), dt, x, y, pool, Mode.F32_VECTOR);
                        double perWeight = dt.quantized() ? dt.blockBytes() / (double) dt.blockSize() : dt.bytes();
                        if (!dt.quantized()) {
                            System.out.printf(Locale.ROOT, "| %d | %s | %d | %.2f (%.1f) | — | — | — | — |%n", round, dt.label(), pool.threads(),
                                    vector, vector * perWeight);
                            continue;
                        }
                        double nat = pass(weights.get(d), dt, x, y, pool, Mode.F32_NATIVE);
                        String i8v = "—";
                        String i8n = "—";
                        String ratio = "—";
                        if (Int8Kernels.handles(dt)) {
                            double v8 = pass(weights.get(d), dt, x, y, pool, Mode.INT8_VECTOR);
                            double n8 = pass(weights.get(d), dt, x, y, pool, Mode.INT8_NATIVE);
                            i8v = String.format(Locale.ROOT, "%.2f (%.1f)", v8, v8 * perWeight);
                            i8n = String.format(Locale.ROOT, "%.2f (%.1f)", n8, n8 * perWeight);
                            ratio = String.format(Locale.ROOT, "%.2f×", n8 / nat);
                        }
                        System.out.printf(Locale.ROOT, "| %d | %s | %d | %.2f (%.1f) | %.2f (%.1f) | %s | %s | %s |%n", round, dt.label(),
                                pool.threads(), vector, vector * perWeight, nat, nat * perWeight, i8v, i8n, ratio);
                    }
                }
            }
        }
        System.out.printf(Locale.ROOT, "load average at end: %s%n", loadAverage());
    }

    /** Random quantized matrices spanning 512 MiB, each block's scales set to a small finite f16. */
    static MemorySegment[] matrices(Arena arena, DType dt) {
        if (!dt.quantized()) {
            return plain(arena, dt);
        }
        long bytes = dt.bytesFor((long) N * K);
        int count = (int) ((512L << 20) / bytes + 1);
        MemorySegment[] ms = new MemorySegment[count];
        long s = 1234;
        for (int c = 0; c < count; c++) {
            MemorySegment m = arena.allocate(bytes, 64);
            for (long i = 0; i + 8 <= bytes; i += 8) {
                s = s * 6364136223846793005L + 1442695040888963407L;
                m.set(ValueLayout.JAVA_LONG_UNALIGNED, i, s);
            }
            for (long b = 0; b < bytes; b += dt.blockBytes()) {
                m.set(Tensor.I16_LE, b, (short) 0x2000);
                if (dt == DType.Q4_K) {
                    m.set(Tensor.I16_LE, b + Quantizer.K_DMIN, (short) 0x1c00);
                }
            }
            ms[c] = m;
        }
        return ms;
    }

    /** Plain-dtype matrices (BF16 only: the stored experts' dtype, for reference) of small random values, spanning 512 MiB. */
    static MemorySegment[] plain(Arena arena, DType dt) {
        long count = (long) N * K;
        MemorySegment[] ms = new MemorySegment[(int) ((512L << 20) / (count * dt.bytes()) + 1)];
        if (dt != DType.BF16) {
            throw new IllegalArgumentException("plain dtype for reference: bf16 only, not " + dt);
        }
        for (int c = 0; c < ms.length; c++) {
            MemorySegment m = arena.allocate(count * dt.bytes(), 64);
            long s = 99 + c;
            for (long i = 0; i < count; i++) {
                s = s * 6364136223846793005L + 1442695040888963407L;
                m.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Numerics.floatToBf16(((s >>> 40) - (1 << 23)) * 0x1p-23f * 0.05f));
            }
            ms[c] = m;
        }
        return ms;
    }

    /**
     * Best of ~2 s of passes over all matrices; Gweights/s. With one thread the time is the
     * thread's CPU time, not wall time: on a loaded machine a preempted pass would otherwise
     * count the other processes' time slices (memory contention still counts, for both kernels).
     */
    enum Mode { F32_VECTOR, F32_NATIVE, INT8_VECTOR, INT8_NATIVE }

    static double pass(MemorySegment[] ms, DType dt, float[] x, float[] y, KernelPool pool, Mode mode) {
        KernelPool.Body[] bodies = new KernelPool.Body[ms.length];
        Int8Activations a = new Int8Activations();
        for (int i = 0; i < ms.length; i++) {
            MemorySegment m = ms[i];
            bodies[i] = switch (mode) {
                case F32_NATIVE -> (r0, r1) -> NativeKernels.matvec(x, 0, m, dt, K, y, 0, r0, r1);
                case F32_VECTOR -> dt.quantized() ? (r0, r1) -> QuantizedKernels.matvecVector(x, 0, m, dt, K, y, 0, r0, r1)
                        : (r0, r1) -> DenseKernels.matvec(x, 0, m, dt, K, y, 0, r0, r1);
                case INT8_NATIVE -> (r0, r1) -> NativeKernels.matmulInt8(a.q, a.d, a.sum, 1, K, m, dt, N, y, 0, r0, r1);
                case INT8_VECTOR -> (r0, r1) -> Int8Kernels.rowsVector(a, 1, K, m, dt, N, y, 0, r0, r1);
            };
        }
        boolean int8 = mode == Mode.INT8_VECTOR || mode == Mode.INT8_NATIVE;
        boolean cpuTime = pool.threads() == 1;
        int chunk = pool.threads() == 1 ? N : N / (pool.threads() * 8) / 4 * 4;
        double best = 0;
        long end = System.nanoTime() + 2_000_000_000L;
        while (System.nanoTime() < end) {
            long t0 = cpuTime ? THREADS.getCurrentThreadCpuTime() : System.nanoTime();
            for (KernelPool.Body b : bodies) {
                if (int8) {
                    a.quantize(x, 0, 1, K);
                }
                if (cpuTime) {
                    b.run(0, N);
                } else {
                    pool.parallelFor(N, chunk, b);
                }
            }
            long t1 = cpuTime ? THREADS.getCurrentThreadCpuTime() : System.nanoTime();
            best = Math.max(best, (double) ms.length * N * K / (t1 - t0));
        }
        return best;
    }

    private static final ThreadMXBean THREADS = ManagementFactory.getThreadMXBean();

    static String loadAverage() throws IOException {
        String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
        return f[0] + " " + f[1] + " " + f[2];
    }
}
