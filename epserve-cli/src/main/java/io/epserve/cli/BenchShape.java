package io.epserve.cli;

import java.util.SplittableRandom;
import picocli.CommandLine.Option;

/** The peers' benchmark shape, shared by the bench commands: a random prompt, greedy decode, several runs. */
final class BenchShape {
    @Option(names = "--prompt-tokens", defaultValue = "128", description = "Prompt length (default ${DEFAULT-VALUE}).")
    int promptTokens;

    @Option(names = "--gen-tokens", defaultValue = "32", description = "Tokens to decode (default ${DEFAULT-VALUE}).")
    int genTokens;

    @Option(names = "--runs", defaultValue = "3", description = "Measured runs, median reported (default ${DEFAULT-VALUE}).")
    int runs;

    /** Refuses shapes that measure nothing. */
    void validate() {
        if (promptTokens < 1 || genTokens < 2 || runs < 1) {
            throw new Main.UsageError("--prompt-tokens >= 1, --gen-tokens >= 2 and --runs >= 1 are required");
        }
    }

    /** The same random prompt for every run and configuration (seed 42). */
    int[] prompt(int vocab) {
        return new SplittableRandom(42).ints(promptTokens, 0, vocab).toArray();
    }
}
