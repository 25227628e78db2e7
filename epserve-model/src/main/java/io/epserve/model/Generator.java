package io.epserve.model;

import io.epserve.model.sampling.Sampler;
import io.epserve.model.sampling.SamplingParams;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.random.RandomGenerator;

/**
 * Autoregressive generation for one sequence: a prefill of the prompt, then one decode step per
 * token through the KV cache (the prefix is never recomputed). The decode loop allocates nothing
 * per token: the logits buffer, the step's chunk and the transformer's workspace are reused.
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
        boolean[] stop = stopTokens(eos, cfg.vocabSize());
        KvCache cache = model.newCache(prompt.length + maxTokens);
        int[] out = new int[maxTokens];
        int n = 0;
        // the logits buffer and the decode chunk are reused by every step: a decode step allocates nothing
        StepLogits logits = new StepLogits();
        int[] one = new int[1];
        List<MoeTransformer.SequenceChunk> decodeStep =
                List.of(new MoeTransformer.SequenceChunk(cache, one, 0, 1, MoeTransformer.Logits.LAST));
        long t0 = System.nanoTime();
        if (maxTokens > 0) {
            model.step(List.of(new MoeTransformer.SequenceChunk(cache, prompt, 0, prompt.length, MoeTransformer.Logits.LAST)),
                    RoutingListener.NONE, logits);
        }
        long prefill = System.nanoTime() - t0;
        long decode = 0;
        int steps = 0;
        Finish finish = Finish.LENGTH;
        while (n < maxTokens) {
            int token = sampler.sample(logits.data(), logits.offset(0), params, random);
            out[n++] = token;
            sink.accept(token);
            if (!ignoreEos && stop[token]) {
                finish = Finish.STOP;
                break;
            }
            if (n == maxTokens) {
                break;
            }
            one[0] = token;
            long s = System.nanoTime();
            model.step(decodeStep, RoutingListener.NONE, logits);
            decode += System.nanoTime() - s;
            steps++;
        }
        return new Result(prompt.clone(), Arrays.copyOf(out, n), finish, prefill, decode, steps);
    }

    /** The stop tokens as flags over the vocabulary (no boxing per generated token); ids outside it never occur. */
    private static boolean[] stopTokens(Set<Integer> eos, int vocab) {
        boolean[] stop = new boolean[vocab];
        if (eos == null) {
            return stop;
        }
        for (Integer id : eos) {
            if (id != null && id >= 0 && id < vocab) {
                stop[id] = true;
            }
        }
        return stop;
    }
}
