package io.epserve.cli;

import io.epserve.engine.Engine;
import io.epserve.engine.FinishReason;
import io.epserve.engine.GenerationRequest;
import io.epserve.engine.Submission;
import io.epserve.engine.TokenListener;
import io.epserve.model.sampling.SamplingParams;
import java.time.Duration;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * One throw-away request through a freshly started engine before the server says ready: a
 * prefill and a few decode steps, so that the JIT has compiled the kernels the first client's
 * request needs. Without it the first request of a fresh {@code serve} waited for C2 (measured
 * under load: time to first token 12.8 s, then 1.7 s for the next ones; BENCHMARKS.md, "Cold start").
 * The engine's counters then start from zero, so that the metrics count the clients' work alone.
 */
final class KernelWarmup {
    private KernelWarmup() {}

    /** Prompt tokens of the warm-up request: a prefill of the benchmark's shape. */
    static final int PROMPT_TOKENS = 128;
    static final int DECODE_TOKENS = 4;

    /**
     * Runs the warm-up request and waits for it up to {@code deadline}. Returns a sentence saying
     * how it went; the server serves either way (a warm-up that could not run costs only speed).
     */
    static String run(Engine engine, int vocabSize, int contextTokens, Duration deadline) {
        int promptTokens = Math.min(PROMPT_TOKENS, contextTokens - DECODE_TOKENS);
        if (promptTokens < 1 || vocabSize < 2) {
            return "kernel warm-up skipped (context of " + contextTokens + " tokens)";
        }
        int[] prompt = new int[promptTokens];
        for (int i = 0; i < promptTokens; i++) {
            prompt[i] = 1 + (int) ((i * 7919L) % (vocabSize - 1));
        }
        CountDownLatch done = new CountDownLatch(1);
        String[] failure = new String[1];
        TokenListener listener = new TokenListener() {
            @Override
            public void onToken(int token) {}

            @Override
            public void onFinish(FinishReason reason, int prompt, int generated) {
                done.countDown();
            }

            @Override
            public void onError(RuntimeException error) {
                failure[0] = String.valueOf(error.getMessage());
                done.countDown();
            }
        };
        long t0 = System.nanoTime();
        Submission s = engine.submit(new GenerationRequest("kernel-warmup", prompt, SamplingParams.GREEDY, DECODE_TOKENS, true, Set.of()),
                listener);
        if (!(s instanceof Submission.Accepted)) {
            return "kernel warm-up not accepted (" + s + ")";
        }
        try {
            if (!done.await(deadline.toMillis(), TimeUnit.MILLISECONDS)) {
                return "kernel warm-up still running after " + deadline.toSeconds() + " s; serving meanwhile";
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "kernel warm-up interrupted";
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        // the warm-up is not the service's work: /metrics and the live view count from the first client
        try {
            engine.resetCounters();
        } catch (IllegalStateException e) {
            // the engine is not idle yet (a failed warm-up may still be settling): its counts stay, said so
            return String.format(Locale.ROOT, "kernels warmed up in %.1f s; the engine's counters include the warm-up (%s)", seconds,
                    e.getMessage());
        }
        if (failure[0] != null) {
            return "kernel warm-up failed: " + failure[0];
        }
        return String.format(Locale.ROOT, "kernels warmed up in %.1f s", seconds);
    }
}
