package io.epserve.cli;

import io.epserve.model.plan.WeightFormat;
import io.epserve.sim.CostModel;
import io.epserve.sim.KernelCost;
import io.epserve.sim.ModelShape;
import io.epserve.tensor.DType;
import io.epserve.tensor.KernelPool;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Tensor;
import io.epserve.tensor.VectorKernels;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;

/**
 * Measures the routed-expert kernel on this machine, for {@code epserve simulate --fit-cost}: the
 * three BF16 products of one expert (gate, up: intermediate × hidden; down: hidden × intermediate)
 * on one kernel thread, over copies spanning 256 MiB so that every call streams its weights from
 * memory as a decode step does, at 1–32 tokens; a least-squares line time = a + b·m gives the
 * weight-read rate (expert bytes / a) and the flop rate (2 · params / b) of a {@link KernelCost}.
 */
final class CostProbe {
    private static final int[] TOKENS = {1, 2, 4, 8, 16, 32};
    private static final long SPAN = 256L << 20;

    private CostProbe() {}

    static CostModel fit(ModelShape m, PrintStream out) {
        int h = m.hidden();
        int inter = (int) (m.paramsPerExpert() / 3 / h);
        long expertBytes = DType.BF16.bytesFor(m.paramsPerExpert());
        int copies = (int) Math.max(2, SPAN / expertBytes);
        double[] seconds = new double[TOKENS.length];
        try (Arena arena = Arena.ofConfined(); KernelPool pool = new KernelPool(1)) {
            Tensor[][] experts = new Tensor[copies][];
            for (int c = 0; c < copies; c++) {
                experts[c] = new Tensor[] {matrix(arena, inter, h, 3L * c), matrix(arena, inter, h, 3L * c + 1), matrix(arena, h, inter, 3L * c + 2)};
            }
            float[] x = new float[32 * Math.max(h, inter)];
            Arrays.fill(x, 0.01f);
            float[] y = new float[32 * Math.max(h, inter)];
            for (int i = 0; i < TOKENS.length; i++) {
                int tokens = TOKENS[i];
                run(experts, x, y, tokens, pool, copies); // warm-up pass
                double[] passes = new double[5];
                for (int p = 0; p < passes.length; p++) {
                    long t0 = System.nanoTime();
                    run(experts, x, y, tokens, pool, copies);
                    passes[p] = (System.nanoTime() - t0) / 1e9 / copies;
                }
                Arrays.sort(passes);
                seconds[i] = passes[passes.length / 2];
                out.printf(Locale.ROOT, "expert %dx%d BF16, %2d tokens, 1 thread: %.0f µs%n", inter, h, tokens, seconds[i] * 1e6);
            }
        }
        double[] ab = leastSquares(TOKENS, seconds);
        double a = Math.max(ab[0], 1e-7);
        double b = Math.max(ab[1], 1e-9);
        KernelCost bf16 = new KernelCost(0, expertBytes / a, 2.0 * m.paramsPerExpert() / b);
        out.printf(Locale.ROOT, "fit: %.0f µs + %.1f µs per token: weights at %.1f GB/s, %.1f GFLOP/s per thread%n", a * 1e6, b * 1e6,
                bf16.bytesPerSecond() / 1e9, bf16.flopsPerSecond() / 1e9);
        CostModel base = CostModel.thisMachine();
        Map<WeightFormat, KernelCost> e = new EnumMap<>(base.experts());
        e.put(WeightFormat.BF16, bf16);
        return new CostModel(e, bf16, base.frontendLayerSeconds(), base.frontendTokenSeconds(), String.format(Locale.ROOT,
                "expert kernel measured by --fit-cost on %s (BF16 experts and frontend products); other dtypes and frontend overheads "
                        + "from BENCHMARKS.md", m.name()));
    }

    private static void run(Tensor[][] experts, float[] x, float[] y, int tokens, KernelPool pool, int copies) {
        for (int c = 0; c < copies; c++) {
            VectorKernels.matmul(x, 0, tokens, experts[c][0], y, 0, pool);
            VectorKernels.matmul(x, 0, tokens, experts[c][1], y, 0, pool);
            VectorKernels.matmul(x, 0, tokens, experts[c][2], y, 0, pool);
        }
    }

    /** Least squares of y = a + b·x. */
    static double[] leastSquares(int[] xs, double[] ys) {
        double n = xs.length;
        double sx = 0;
        double sy = 0;
        double sxx = 0;
        double sxy = 0;
        for (int i = 0; i < xs.length; i++) {
            sx += xs[i];
            sy += ys[i];
            sxx += (double) xs[i] * xs[i];
            sxy += xs[i] * ys[i];
        }
        double b = (n * sxy - sx * sy) / (n * sxx - sx * sx);
        return new double[] {(sy - b * sx) / n, b};
    }

    private static Tensor matrix(Arena arena, int rows, int cols, long seed) {
        long count = (long) rows * cols;
        MemorySegment seg = arena.allocate(DType.BF16.bytesFor(count), 64);
        long s = seed * 0x9E3779B97F4A7C15L + 1;
        for (long i = 0; i < count; i++) {
            s = s * 6364136223846793005L + 1442695040888963407L;
            seg.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, Numerics.floatToBf16(((s >>> 40) - (1 << 23)) * 0x1p-23f * 0.05f));
        }
        return new Tensor("expert" + seed, seg, DType.BF16, new long[] {rows, cols});
    }
}
