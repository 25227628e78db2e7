package io.epserve.bench;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;

/**
 * One session, one table: measures the machine limits ({@link MachineLimits}), runs the
 * {@link MatvecBench}, {@link MatmulBench} and {@link ExpertBatchBench} JMH benchmarks, and prints each figure in GB/s
 * (m = 1) or GFLOP/s (m &gt; 1) with its ratio to the limit measured for the same thread count.
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp epserve-bench/target/benchmarks.jar io.epserve.bench.KernelReport [regex]
 * </pre>
 * The optional regex selects benchmarks (default: all three classes).
 */
public final class KernelReport {
    private KernelReport() {}

    public static void main(String[] args) throws Exception {
        String include = args.length > 0 ? args[0] : "io.epserve.bench.(MatvecBench|MatmulBench|ExpertBatchBench)";
        System.out.printf(Locale.ROOT, "cpu: %s, %d processors%n", MachineLimits.cpuName(), Runtime.getRuntime().availableProcessors());
        double[] triad = new double[3];
        double[] peak = new double[3];
        for (int t = 1; t <= 2; t++) {
            triad[t] = MachineLimits.triad(512L << 20, t, 5);
            peak[t] = MachineLimits.fmaPeak(t, 5);
            System.out.printf(Locale.ROOT, "limits threads=%d: triad %.1f GB/s, fp32 fma peak %.1f GFLOP/s%n", t, triad[t], peak[t]);
        }
        ChainedOptionsBuilder ob = new OptionsBuilder().include(include);
        Collection<RunResult> results = new Runner(ob.build()).run();
        List<String> lines = new ArrayList<>();
        lines.add("| benchmark | dtype | shape | threads | time/op | figure | limit | ratio |");
        lines.add("| --- | --- | --- | --- | --- | --- | --- | --- |");
        for (RunResult r : results) {
            var p = r.getParams();
            String bench = p.getBenchmark().replaceAll(".*\\.", "");
            String dtype = p.getParam("dtype");
            int threads = Integer.parseInt(p.getParam("threads"));
            double us = r.getPrimaryResult().getScore();
            double secs = us * 1e-6;
            if (p.getParam("shape") != null && p.getParam("m") != null) {
                String shape = p.getParam("shape");
                int m = Integer.parseInt(p.getParam("m"));
                double gf = ExpertBatchBench.flops(shape, m) / secs / 1e9;
                lines.add(String.format(Locale.ROOT, "| %s m=%d | %s | %s | %d | %.1f µs | %.1f GFLOP/s | fma %.1f GFLOP/s | %.0f%% |",
                        bench, m, "BF16", shape, threads, us, gf, peak[threads], 100 * gf / peak[threads]));
            } else if (p.getParam("shape") != null) {
                String shape = p.getParam("shape");
                double gbs = MatvecBench.weightBytes(dtype, shape) / secs / 1e9;
                lines.add(String.format(Locale.ROOT, "| %s m=1 | %s | %s | %d | %.1f µs | %.1f GB/s | triad %.1f GB/s | %.0f%% |",
                        bench, dtype, shape, threads, us, gbs, triad[threads], 100 * gbs / triad[threads]));
            } else {
                int m = Integer.parseInt(p.getParam("m"));
                long size = Long.parseLong(p.getParam("size"));
                double gf = 2.0 * m * size * size / secs / 1e9;
                lines.add(String.format(Locale.ROOT, "| %s m=%d | %s | %dx%d | %d | %.1f µs | %.1f GFLOP/s | fma %.1f GFLOP/s | %.0f%% |",
                        bench, m, dtype, size, size, threads, us, gf, peak[threads], 100 * gf / peak[threads]));
            }
        }
        for (int t = 1; t <= 2; t++) {
            lines.add(String.format(Locale.ROOT, "| limits | | | %d | | triad %.1f GB/s, fma %.1f GFLOP/s | | |", t, triad[t], peak[t]));
        }
        System.out.println();
        lines.forEach(System.out::println);
    }
}
