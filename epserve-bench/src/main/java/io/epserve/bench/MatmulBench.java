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
 * Prefill / batched: {@code Y = X Wᵀ} with m tokens, compute-bound. Throughput = 2·m·N·K flops /
 * time; compare with the FP32 FMA peak of {@link MachineLimits}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "-Xms2g", "-Xmx4g"})
public class MatmulBench {

    @Param({"F32", "BF16"})
    public String dtype;

    @Param({"128"})
    public int m;

    /** N = K. */
    @Param({"1024", "2048", "4096"})
    public int size;

    @Param({"1", "2"})
    public int threads;

    Arena arena;
    Tensor w;
    float[] x;
    float[] y;
    KernelPool pool;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        w = BenchWeights.matrix(arena, DType.valueOf(dtype), size, size, 99);
        x = BenchWeights.activations(m * size, 7);
        y = new float[m * size];
        pool = new KernelPool(threads);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
        arena.close();
    }

    @Benchmark
    public float matmul() {
        VectorKernels.matmul(x, 0, m, w, y, 0, pool);
        return y[0];
    }
}
