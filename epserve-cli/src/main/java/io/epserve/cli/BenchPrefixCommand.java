package io.epserve.cli;

import io.epserve.engine.Engine;
import io.epserve.engine.EngineConfig;
import io.epserve.engine.EngineStats;
import io.epserve.engine.FinishReason;
import io.epserve.engine.GenerationRequest;
import io.epserve.engine.Submission;
import io.epserve.engine.TokenListener;
import io.epserve.model.LoadedModel;
import io.epserve.model.sampling.SamplingParams;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code epserve bench prefix}: time to first token of chat-like turns that share a long system
 * prompt, with the engine's prefix cache and without it, on the same engine settings and the same
 * requests, one request at a time (so TTFT is the prefill of what is not cached). Checks that both
 * give the same greedy tokens.
 */
@Command(name = "prefix", mixinStandardHelpOptions = true,
        description = {"Time to first token with and without prefix caching: --turns requests, each a shared "
                + "system prompt of --system-tokens random ids plus --user-tokens of its own, sent one at a time to "
                + "an engine with the prefix cache on and to one with it off. Prints the median TTFT of each, their "
                + "ratio and the cache's hit rate, and checks that the greedy tokens are the same."})
final class BenchPrefixCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--system-tokens", defaultValue = "512", description = "Tokens of the shared system prompt (default ${DEFAULT-VALUE}).")
    int systemTokens;

    @Option(names = "--user-tokens", defaultValue = "16", description = "Tokens of each turn's own part (default ${DEFAULT-VALUE}).")
    int userTokens;

    @Option(names = "--turns", defaultValue = "8", description = "Measured requests per setting (default ${DEFAULT-VALUE}).")
    int turns;

    @Option(names = "--gen-tokens", defaultValue = "4", description = "Greedy tokens per request (default ${DEFAULT-VALUE}).")
    int genTokens;

    @Option(names = "--warmup", defaultValue = "2", description = "Unmeasured requests per setting first (default ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the random token ids (default ${DEFAULT-VALUE}).")
    long seed;

    private record Outcome(double ttftSeconds, List<Integer> tokens) {}

    @Override
    public Integer call() throws Exception {
        if (systemTokens < 1 || userTokens < 1 || turns < 1 || genTokens < 1 || warmup < 0) {
            throw new Main.UsageError("--system-tokens, --user-tokens, --turns and --gen-tokens must be >= 1, --warmup >= 0");
        }
        TerminalProgress progress = TerminalProgress.forStderr();
        try (LoadedModel m = model.load(model.resolveModelDir(progress), progress)) {
            int vocab = m.config().vocabSize();
            SplittableRandom r = new SplittableRandom(seed);
            int[] system = r.ints(systemTokens, 0, vocab).toArray();
            List<int[]> prompts = new ArrayList<>();
            for (int i = 0; i < warmup + turns; i++) {
                int[] p = Arrays.copyOf(system, systemTokens + userTokens);
                System.arraycopy(r.ints(userTokens, 0, vocab).toArray(), 0, p, systemTokens, userTokens);
                prompts.add(p);
            }
            EngineConfig base = EngineConfig.defaults().withMaxBatchTokens(Math.max(EngineConfig.DEFAULT_MAX_BATCH_TOKENS,
                    systemTokens + userTokens));
            List<Outcome> off = run(m, base.withPrefixCaching(false), prompts, null);
            long[] hits = new long[2];
            List<Outcome> on = run(m, base.withPrefixCaching(true), prompts, hits);
            double[] ttftOff = measured(off);
            double[] ttftOn = measured(on);
            boolean same = true;
            for (int i = 0; i < prompts.size(); i++) {
                same &= off.get(i).tokens().equals(on.get(i).tokens());
            }
            double medOff = BenchCommand.median(ttftOff);
            double medOn = BenchCommand.median(ttftOn);
            System.out.printf("model: %s, prompt %d shared + %d own tokens, %d turns, %d generated each%n", m.checkpoint().dir(),
                    systemTokens, userTokens, turns, genTokens);
            System.out.printf("TTFT without prefix cache: %.1f ms median (runs %s)%n", medOff * 1e3, ms(ttftOff));
            System.out.printf("TTFT with prefix cache:    %.1f ms median (runs %s)%n", medOn * 1e3, ms(ttftOn));
            System.out.printf("speed-up: %.2fx; cache hit rate %.1f%% of prompt tokens; same greedy tokens: %s%n", medOff / medOn,
                    hits[0] == 0 ? 0.0 : 100.0 * hits[1] / hits[0], same ? "yes" : "NO");
            return same ? 0 : 1;
        }
    }

    private List<Outcome> run(LoadedModel m, EngineConfig config, List<int[]> prompts, long[] hits) throws Exception {
        List<Outcome> out = new ArrayList<>();
        try (Engine engine = Engine.start(m.transformer(), config)) {
            for (int i = 0; i < prompts.size(); i++) {
                out.add(one(engine, new GenerationRequest("turn-" + i, prompts.get(i), SamplingParams.GREEDY, genTokens, true, Set.of())));
            }
            if (hits != null) {
                EngineStats s = engine.stats();
                hits[0] = s.prefixQueriedTokens();
                hits[1] = s.prefixHitTokens();
            }
        }
        return out;
    }

    private static Outcome one(Engine engine, GenerationRequest request) throws Exception {
        CompletableFuture<Outcome> done = new CompletableFuture<>();
        List<Integer> tokens = new ArrayList<>();
        long[] first = {0};
        long start = System.nanoTime();
        TokenListener listener = new TokenListener() {
            @Override
            public void onToken(int token) {
                if (tokens.isEmpty()) {
                    first[0] = System.nanoTime();
                }
                tokens.add(token);
            }

            @Override
            public void onFinish(FinishReason reason, int promptTokens, int generatedTokens) {
                done.complete(new Outcome((first[0] - start) / 1e9, List.copyOf(tokens)));
            }

            @Override
            public void onError(RuntimeException error) {
                done.completeExceptionally(error);
            }
        };
        if (!(engine.submit(request, listener) instanceof Submission.Accepted)) {
            throw new IllegalStateException("the engine refused request " + request.id());
        }
        return done.get(10, TimeUnit.MINUTES);
    }

    private double[] measured(List<Outcome> all) {
        return all.subList(warmup, all.size()).stream().mapToDouble(Outcome::ttftSeconds).toArray();
    }

    private static String ms(double[] v) {
        return Arrays.stream(v).mapToObj(x -> String.format("%.1f", x * 1e3)).toList().toString();
    }
}
