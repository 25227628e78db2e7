package io.epserve.bench;

import java.lang.foreign.Arena;
import java.util.concurrent.TimeUnit;

import io.epserve.tensor.DType;
import io.epserve.tensor.KernelPool;
import io.epserve.tensor.Tensor;
import io.epserve.tensor.VectorKernels;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Batched decode through one expert: {@code Y = X Wᵀ} with the few tokens an expert gets per
 * step when many sequences decode together (32 sequences, top-2 of 8 experts: about 8 each),
 * BF16 weights of the demo model's expert shapes (gate/up 2816×1024, down 1024×2816), cycled
 * through copies spanning 256 MiB so that each call streams its weights from DRAM, as in a
 * decode step. Throughput = 2·m·N·K flops / time; compare with the FP32 FMA peak of
 * {@link MachineLimits}. Covers the few-tokens tiles (m ≤ 4), the groups of 8 (5..24) and the
 * staged tiles (m > 24) of {@link VectorKernels#matmul}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "-Xms2g", "-Xmx4g"})
public class ExpertBatchBench {

    /** N x K. */
    @Param({"2816x1024", "1024x2816"})
    public String shape;

    @Param({"2", "4", "8", "16", "32"})
    public int m;

    @Param({"1", "2"})
    public int threads;

    Arena arena;
    Tensor[] w;
    float[] x;
    float[] y;
    KernelPool pool;
    int next;

    @Setup(Level.Trial)
    public void setUp() {
        String[] s = shape.split("x");
        int n = Integer.parseInt(s[0]);
        int k = Integer.parseInt(s[1]);
        arena = Arena.ofShared();
        w = BenchWeights.copies(arena, DType.BF16, n, k, 256L << 20);
        x = BenchWeights.activations(m * k, 7);
        y = new float[m * n];
        pool = new KernelPool(threads);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
        arena.close();
    }

    @Benchmark
    public float matmul() {
        Tensor t = w[next];
        next = next + 1 == w.length ? 0 : next + 1;
        VectorKernels.matmul(x, 0, m, t, y, 0, pool);
        return y[0];
    }

    /** Multiply-adds of one call ×2, for GFLOP/s. */
    static double flops(String shape, int m) {
        String[] s = shape.split("x");
        return 2.0 * m * Long.parseLong(s[0]) * Long.parseLong(s[1]);
    }
}
