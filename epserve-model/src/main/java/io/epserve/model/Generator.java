package io.epserve.model;

import io.epserve.model.sampling.Sampler;
import io.epserve.model.sampling.SamplingParams;
import java.util.Arrays;
import java.util.Set;
import java.util.random.RandomGenerator;

/**
 * Autoregressive generation for one sequence: a prefill of the prompt, then one decode step per
 * token through the KV cache (the prefix is never recomputed).
 */
public final class Generator {
    private Generator() {}

    /** Why generation stopped. */
    public enum Finish { LENGTH, STOP }

    /** Receives each generated token as soon as it is chosen. */
    @FunctionalInterface
    public interface TokenSink {
        void accept(int token);
    }

    /**
     * The outcome. Prefill speed counts prompt tokens over the prompt's forward pass; decode
     * speed counts decode forward passes (one per generated token after the first) over their
     * time, as llama.cpp reports them.
     */
    public record Result(int[] prompt, int[] generated, Finish finish, long prefillNanos, long decodeNanos, int decodeSteps) {
        public double prefillTokensPerSecond() {
            return prefillNanos == 0 ? 0 : prompt.length * 1e9 / prefillNanos;
        }

        public double decodeTokensPerSecond() {
            return decodeNanos == 0 ? 0 : decodeSteps * 1e9 / decodeNanos;
        }
    }

    public static Result generate(MoeTransformer model, int[] prompt, int maxTokens, SamplingParams params, boolean ignoreEos,
                                  Set<Integer> eos, TokenSink sink) {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt is empty: give at least one token");
        }
        if (maxTokens < 0) {
            throw new IllegalArgumentException("max tokens must be >= 0, got " + maxTokens);
        }
        ModelConfig cfg = model.config();
        if (prompt.length + maxTokens > cfg.maxPositions()) {
            throw new IllegalArgumentException("prompt (" + prompt.length + ") + max tokens (" + maxTokens
                    + ") exceeds the model's context of " + cfg.maxPositions() + " positions");
        }
        Sampler sampler = new Sampler(cfg.vocabSize());
        RandomGenerator random = Sampler.newRandom(params.seed());
        KvCache cache = model.newCache(prompt.length + maxTokens);
        int[] out = new int[maxTokens];
        int n = 0;
        long t0 = System.nanoTime();
        float[] logits = maxTokens == 0 ? null : model.forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
        long prefill = System.nanoTime() - t0;
        long decode = 0;
        int steps = 0;
        Finish finish = Finish.LENGTH;
        int[] one = new int[1];
        while (n < maxTokens) {
            int token = sampler.sample(logits, params, random);
            out[n++] = token;
            sink.accept(token);
            if (!ignoreEos && eos.contains(token)) {
                finish = Finish.STOP;
                break;
            }
            if (n == maxTokens) {
                break;
            }
            one[0] = token;
            long s = System.nanoTime();
            logits = model.forward(cache, one, 1, false, RoutingListener.NONE);
            decode += System.nanoTime() - s;
            steps++;
        }
        return new Result(prompt.clone(), Arrays.copyOf(out, n), finish, prefill, decode, steps);
    }
}
