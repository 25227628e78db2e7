package io.epserve.cli;

import io.epserve.model.Generator;
import io.epserve.model.LoadedModel;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.tensor.KernelPool;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code epserve bench}: the peers' benchmark shape (BENCHMARK-REFERENCE.md): a prompt of P
 * random tokens, then G greedy tokens with EOS ignored; prefill and decode tokens/s, median of
 * several runs after a warm-up.
 */
@Command(name = "bench", mixinStandardHelpOptions = true, subcommands = {BenchEpCommand.class, BenchQuantCommand.class, BenchPrefixCommand.class,
        BenchBalanceCommand.class, BenchFailoverCommand.class},
        description = {"Measure prefill and decode speed: a prompt of --prompt-tokens random token ids, then "
                + "--gen-tokens greedy tokens (EOS ignored). Prints the median of --runs runs after --warmup runs. "
                + "`epserve bench ep` compares single-process experts with expert worker processes."})
final class BenchCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Mixin
    BenchShape shape;

    @Option(names = "--warmup", defaultValue = "1", description = "Unmeasured warm-up runs (default ${DEFAULT-VALUE}).")
    int warmup;

    @Override
    public Integer call() {
        shape.validate();
        if (warmup < 0) {
            throw new Main.UsageError("--warmup must be >= 0");
        }
        int promptTokens = shape.promptTokens;
        int genTokens = shape.genTokens;
        int runs = shape.runs;
        TerminalProgress progress = TerminalProgress.forStderr();
        Path path = model.resolveModelDir(progress);
        try (LoadedModel m = model.load(path, progress)) {
            int vocab = m.config().vocabSize();
            int[] prompt = shape.prompt(vocab);
            double[] prefill = new double[runs];
            double[] decode = new double[runs];
            for (int i = -warmup; i < runs; i++) {
                Generator.Result r = Generator.generate(m.transformer(), prompt, genTokens, SamplingParams.GREEDY, true, Set.of(), t -> { });
                if (i >= 0) {
                    prefill[i] = r.prefillTokensPerSecond();
                    decode[i] = r.decodeTokensPerSecond();
                }
            }
            System.out.printf("model: %s (%s, %d layers, %d experts top-%d)%n", path, m.config().architecture().hfName(),
                    m.config().layers(), m.config().numExperts(), m.config().topK());
            System.out.printf("threads: %d%n", KernelPool.common().threads());
            System.out.printf("prefill: %.1f tokens/s (prompt %d; runs %s)%n", median(prefill), promptTokens, fmt(prefill));
            System.out.printf("decode:  %.1f tokens/s (%d tokens; runs %s)%n", median(decode), genTokens, fmt(decode));
        }
        return 0;
    }

    static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    static String fmt(double[] v) {
        return Arrays.stream(v).mapToObj(x -> String.format("%.1f", x)).toList().toString();
    }
}
