package io.epserve.sim;

/**
 * The time one kernel thread takes to multiply m tokens through a weight matrix: a fixed cost per
 * call, the weights read once from memory, and the multiply-adds of every token. This is the
 * roofline shape the kernel measurements of BENCHMARKS.md follow on this machine (a 2816×1024
 * BF16 product takes ≈ 0.3 + 0.13·m ms on one thread: weights streamed at ≈ 19 GB/s, then
 * ≈ 44 GFLOP/s per token), so two numbers fitted on one shape carry to other shapes.
 *
 * @param fixedSeconds   per call, whatever the size
 * @param bytesPerSecond weight bytes read per second (one thread)
 * @param flopsPerSecond floating-point operations per second (one thread); 2 per weight per token
 */
public record KernelCost(double fixedSeconds, double bytesPerSecond, double flopsPerSecond) {

    public KernelCost {
        if (!(fixedSeconds >= 0) || !(bytesPerSecond > 0) || !(flopsPerSecond > 0)) {
            throw new IllegalArgumentException("kernel cost needs fixed >= 0 s and positive bytes/s and flops/s, got "
                    + fixedSeconds + ", " + bytesPerSecond + ", " + flopsPerSecond);
        }
    }

    /** Seconds on one thread for {@code tokens} tokens through {@code params} weights held in {@code bytes}; 0 without tokens. */
    public double seconds(long bytes, long params, double tokens) {
        if (tokens <= 0) {
            return 0;
        }
        return fixedSeconds + bytes / bytesPerSecond + tokens * 2.0 * params / flopsPerSecond;
    }
}
