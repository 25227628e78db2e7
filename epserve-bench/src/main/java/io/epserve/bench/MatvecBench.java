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
 * Decode: {@code y = W x} (m = 1), memory-bound. Cycles through copies of W spanning 512 MiB so
 * every call streams its weights from DRAM. Throughput = weight bytes / time; compare with the
 * STREAM triad of {@link MachineLimits}. {@code threads} is the size of a private
 * {@link KernelPool} (the caller is one of them).
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "-Xms2g", "-Xmx4g"})
public class MatvecBench {

    @Param({"F32", "BF16"})
    public String dtype;

    /** N x K. */
    @Param({"4096x4096", "8192x4096"})
    public String shape;

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
        w = BenchWeights.copies(arena, DType.valueOf(dtype), n, k, 512L << 20);
        x = BenchWeights.activations(k, 7);
        y = new float[n];
        pool = new KernelPool(threads);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        pool.close();
        arena.close();
    }

    @Benchmark
    public float matvec() {
        Tensor t = w[next];
        next = next + 1 == w.length ? 0 : next + 1;
        VectorKernels.matmul(x, 0, 1, t, y, 0, pool);
        return y[0];
    }

    /** Bytes of one weight matrix, for GB/s. */
    public static long weightBytes(String dtype, String shape) {
        String[] s = shape.split("x");
        return DType.valueOf(dtype).bytesFor(Long.parseLong(s[0]) * Long.parseLong(s[1]));
    }
}
