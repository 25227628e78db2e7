package io.epserve.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.CyclicBarrier;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * The two limits the kernels are judged against, measured on this machine:
 * <ul>
 *   <li>memory bandwidth, STREAM triad {@code a[i] = b[i] + s * c[i]} over three off-heap arrays
 *       much larger than the caches, reported the STREAM way (3 arrays × bytes / time, i.e. the
 *       write-allocate read of {@code a} is not counted);</li>
 *   <li>FP32 FMA peak: independent {@link FloatVector} fma chains per thread (enough to cover
 *       the FMA latency × the FMA ports), 2 flops per lane per fma.</li>
 * </ul>
 * Each figure is the best of several runs, for 1 and 2 threads (or the counts given).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp epserve-bench/target/benchmarks.jar \
 *      io.epserve.bench.MachineLimits [arrayMiB=512] [threads=1,2]
 * </pre>
 * (Lives in epserve-bench and uses the Vector API only to measure the machine, not as a kernel.)
 */
public final class MachineLimits {
    private MachineLimits() {}

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfFloat FLOAT = ValueLayout.JAVA_FLOAT;

    public static void main(String[] args) throws Exception {
        long mib = args.length > 0 ? Long.parseLong(args[0]) : 512;
        String[] ts = (args.length > 1 ? args[1] : "1,2").split(",");
        System.out.printf(Locale.ROOT, "cpu: %s, %d processors, float vector %d bits (%d lanes)%n",
                cpuName(), Runtime.getRuntime().availableProcessors(), F.vectorBitSize(), F.length());
        for (String t : ts) {
            int threads = Integer.parseInt(t.trim());
            System.out.printf(Locale.ROOT, "triad    threads=%d arrays=3x%d MiB: %.1f GB/s%n", threads, mib, triad(mib << 20, threads, 7));
        }
        for (String t : ts) {
            int threads = Integer.parseInt(t.trim());
            System.out.printf(Locale.ROOT, "fma peak threads=%d: %.1f GFLOP/s%n", threads, fmaPeak(threads, 7));
        }
    }

    static String cpuName() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo"))) {
                if (line.startsWith("model name")) {
                    return line.substring(line.indexOf(':') + 1).trim();
                }
            }
        } catch (Exception e) {
            // not Linux
        }
        return System.getProperty("os.arch");
    }

    /** STREAM triad over arrays of {@code bytes} each; best GB/s over {@code runs} runs. */
    public static double triad(long bytes, int threads, int runs) throws Exception {
        try (Arena arena = Arena.ofShared()) {
            MemorySegment a = arena.allocate(bytes, 4096);
            MemorySegment b = arena.allocate(bytes, 4096);
            MemorySegment c = arena.allocate(bytes, 4096);
            long n = bytes / 4;
            double best = 0;
            for (int run = 0; run <= runs; run++) {
                final boolean init = run == 0;
                double secs = inThreads(threads, (id, count) -> {
                    long lo = n * id / count / F.length() * F.length();
                    long hi = id == count - 1 ? n : n * (id + 1) / count / F.length() * F.length();
                    if (init) { // first touch by the thread that streams the part later
                        for (long i = lo; i < hi; i++) {
                            a.setAtIndex(FLOAT, i, 0f);
                            b.setAtIndex(FLOAT, i, 1f);
                            c.setAtIndex(FLOAT, i, 2f);
                        }
                    } else {
                        triadRange(a, b, c, 3f, lo, hi);
                    }
                });
                if (!init) {
                    best = Math.max(best, 3.0 * bytes / secs / 1e9);
                }
            }
            if (a.getAtIndex(FLOAT, n / 2) != 7f) {
                throw new AssertionError("triad result wrong: " + a.getAtIndex(FLOAT, n / 2));
            }
            return best;
        }
    }

    static void triadRange(MemorySegment a, MemorySegment b, MemorySegment c, float s, long lo, long hi) {
        int l = F.length();
        long i = lo;
        for (; i + l <= hi; i += l) {
            long o = i * 4;
            FloatVector.fromMemorySegment(F, c, o, ByteOrder.nativeOrder()).fma(s, 0f)
                    .add(FloatVector.fromMemorySegment(F, b, o, ByteOrder.nativeOrder()))
                    .intoMemorySegment(a, o, ByteOrder.nativeOrder());
        }
        for (; i < hi; i++) {
            a.setAtIndex(FLOAT, i, b.getAtIndex(FLOAT, i) + s * c.getAtIndex(FLOAT, i));
        }
    }

    /** FP32 FMA peak over {@code threads} threads; best GFLOP/s over {@code runs} runs. */
    public static double fmaPeak(int threads, int runs) throws Exception {
        long iters = 20_000_000L;
        double best = 0;
        float[] sink = new float[threads];
        for (int run = 0; run <= runs; run++) {
            double secs = inThreads(threads, (id, count) -> sink[id] = fmaChains(iters));
            if (run > 0) {
                best = Math.max(best, (double) threads * iters * 16 * F.length() * 2 / secs / 1e9);
            }
        }
        return best;
    }

    /** 16 independent fma chains (enough for 2 FMA ports × 4-5 cycles of latency, or 8 with AVX-512's 32 registers). */
    static float fmaChains(long iters) {
        FloatVector m = FloatVector.broadcast(F, 0.999999f);
        FloatVector c = FloatVector.broadcast(F, 1e-7f);
        FloatVector a0 = FloatVector.broadcast(F, 1f), a1 = a0.add(1f), a2 = a0.add(2f), a3 = a0.add(3f);
        FloatVector a4 = a0.add(4f), a5 = a0.add(5f), a6 = a0.add(6f), a7 = a0.add(7f);
        FloatVector a8 = a0.add(8f), a9 = a0.add(9f), a10 = a0.add(10f), a11 = a0.add(11f);
        FloatVector a12 = a0.add(12f), a13 = a0.add(13f), a14 = a0.add(14f), a15 = a0.add(15f);
        for (long i = 0; i < iters; i++) {
            a0 = a0.fma(m, c); a1 = a1.fma(m, c); a2 = a2.fma(m, c); a3 = a3.fma(m, c);
            a4 = a4.fma(m, c); a5 = a5.fma(m, c); a6 = a6.fma(m, c); a7 = a7.fma(m, c);
            a8 = a8.fma(m, c); a9 = a9.fma(m, c); a10 = a10.fma(m, c); a11 = a11.fma(m, c);
            a12 = a12.fma(m, c); a13 = a13.fma(m, c); a14 = a14.fma(m, c); a15 = a15.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7)
                .add(a8).add(a9).add(a10).add(a11).add(a12).add(a13).add(a14).add(a15).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }

    interface Part {
        void run(int id, int count) throws Exception;
    }

    /** Runs {@code part} on {@code threads} fresh threads started together; seconds from the common start to the last end. */
    static double inThreads(int threads, Part part) throws Exception {
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        Thread[] ts = new Thread[threads];
        Exception[] err = new Exception[1];
        for (int t = 0; t < threads; t++) {
            int id = t;
            ts[t] = new Thread(() -> {
                try {
                    start.await();
                    part.run(id, threads);
                } catch (Exception e) {
                    err[0] = e;
                }
            });
            ts[t].start();
        }
        start.await();
        long t0 = System.nanoTime();
        for (Thread t : ts) {
            t.join();
        }
        long t1 = System.nanoTime();
        if (err[0] != null) {
            throw err[0];
        }
        return (t1 - t0) / 1e9;
    }
}
