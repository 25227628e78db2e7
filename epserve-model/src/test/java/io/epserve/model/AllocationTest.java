package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.format.Progress;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.sampling.Sampler;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.moe.ExpertPlacement;
import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.function.ToDoubleFunction;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Steady-state decode allocates less than 1 KiB of Java heap per generated
 * token, at 1 and 8 concurrent sequences (DESIGN.md §3.4: preallocated state).
 *
 * <p>Measured with HotSpot's per-thread allocation counters over every thread that works for a
 * step: the calling thread and the kernel pool's threads ({@link AllocationMeter}). The tiny demo
 * model decodes through {@link Generator} (1 sequence) and through a loop of
 * {@link MoeTransformer#step(List, RoutingListener, StepLogits)} over 8 sequences (with and
 * without two-batch overlap). Each round starts fresh sequences, decodes a warm-up stretch, then
 * measures {@value #MEASURED_TOKENS} tokens at positions past 1000 (so attention runs over long
 * rows, as it does in serving); rounds repeat until two agree, since the first ones also pay for
 * JIT compilation (the Vector API allocates until C2 has compiled the kernels). Steady state is
 * deterministic: the same bytes every round.
 */
class AllocationTest {
    static final double BUDGET_BYTES_PER_TOKEN = 1024;
    static final int WARMUP_TOKENS = 1500;
    static final int MEASURED_TOKENS = 1000;
    static final int MAX_ROUNDS = 40;
    static final Duration STEADY_DEADLINE = Duration.ofSeconds(120);

    @TempDir
    static Path cache;
    static LoadedModel model;

    @BeforeAll
    static void load() {
        model = LoadedModel.load(DemoModel.ensure(DemoModel.TINY, cache, Progress.NONE), LoadedModel.Options.defaults());
        // start the kernel pool so that its threads exist when the meter looks for them
        model.transformer().forward(model.transformer().newCache(4), new int[] {1, 2}, 2, false, RoutingListener.NONE);
    }

    @AfterAll
    static void close() {
        model.close();
    }

    @Test
    void generatorDecodeOfOneSequence() {
        MoeTransformer t = model.transformer();
        t.setOverlap(false);
        double perToken = steadyState("Generator, 1 sequence", meter -> {
            long[] bytes = new long[1];
            int[] seen = new int[1];
            Generator.generate(t, new int[] {5, 6, 7, 8}, WARMUP_TOKENS + MEASURED_TOKENS + 1, SamplingParams.GREEDY, true,
                    Set.of(), token -> {
                        int i = seen[0]++;
                        if (i == WARMUP_TOKENS) {
                            meter.start();
                        } else if (i == WARMUP_TOKENS + MEASURED_TOKENS) {
                            bytes[0] = meter.stop();
                        }
                    });
            return bytes[0] / (double) MEASURED_TOKENS;
        });
        assertThat(perToken).as("heap bytes per generated token, 1 sequence through Generator").isLessThan(BUDGET_BYTES_PER_TOKEN);
    }

    @Test
    void batchedDecodeOfEightSequences() {
        assertThat(batchedDecode(8, false)).as("heap bytes per generated token, 8 sequences").isLessThan(BUDGET_BYTES_PER_TOKEN);
    }

    @Test
    void batchedDecodeOfEightSequencesWithTwoBatchOverlap() {
        assertThat(batchedDecode(8, true)).as("heap bytes per generated token, 8 sequences, two-batch overlap")
                .isLessThan(BUDGET_BYTES_PER_TOKEN);
    }

    /** Several in-process workers, each expert split in 2 shards on 2 workers: dispatch plans, shard routing, combine. */
    @Test
    void batchedDecodeWithExpertShardsOverTwoWorkers() {
        try (LoadedModel sharded = LoadedModel.load(model.checkpoint().dir(), LoadedModel.Options.defaults().withValidate(false)
                .withDispatchers(ExpertShardingTest.sharded(2, 2, ExpertPlacement.Policy.ROUND_ROBIN)))) {
            assertThat(batchedDecode(sharded.transformer(), sharded.config().vocabSize(), 8, true))
                    .as("heap bytes per generated token, 8 sequences, 2 workers × 2 expert shards, overlap")
                    .isLessThan(BUDGET_BYTES_PER_TOKEN);
        }
    }

    private double batchedDecode(int seqs, boolean overlap) {
        return batchedDecode(model.transformer(), model.config().vocabSize(), seqs, overlap);
    }

    /** Bytes per generated token of a decode loop over {@code seqs} sequences, each step one token of each. */
    private static double batchedDecode(MoeTransformer t, int vocab, int seqs, boolean overlap) {
        t.setOverlap(overlap);
        try {
            int warmSteps = WARMUP_TOKENS / seqs;
            int measuredSteps = MEASURED_TOKENS / seqs;
            Sampler sampler = new Sampler(vocab);
            return steadyState(seqs + " sequences, overlap " + overlap, meter -> {
                StepLogits logits = new StepLogits();
                List<MoeTransformer.SequenceChunk> prefill = new ArrayList<>();
                List<MoeTransformer.SequenceChunk> decode = new ArrayList<>();
                int[][] next = new int[seqs][1];
                for (int s = 0; s < seqs; s++) {
                    KvCache c = t.newCache(8 + warmSteps + measuredSteps);
                    prefill.add(new MoeTransformer.SequenceChunk(c, new int[] {3 + s, 4, 5 + 2 * s}, 0, 3, MoeTransformer.Logits.LAST));
                    // the same chunk objects every step: each continues its cache with the token in next[s]
                    decode.add(new MoeTransformer.SequenceChunk(c, next[s], 0, 1, MoeTransformer.Logits.LAST));
                }
                t.step(prefill, RoutingListener.NONE, logits);
                for (int i = 0; i < warmSteps + measuredSteps; i++) {
                    if (i == warmSteps) {
                        meter.start();
                    }
                    for (int s = 0; s < seqs; s++) {
                        next[s][0] = sampler.sample(logits.data(), logits.offset(s), SamplingParams.GREEDY, null);
                    }
                    t.step(decode, RoutingListener.NONE, logits);
                }
                return meter.stop() / (double) (measuredSteps * seqs);
            });
        } finally {
            t.setOverlap(false);
        }
    }

    /**
     * Runs measured rounds until two consecutive ones agree (within 1% or 8 bytes) in a steady
     * state: the JIT compiled nothing during the second (code not yet compiled by C2 allocates
     * every vector); returns the lower. Bounded by
     * {@link #MAX_ROUNDS} and {@link #STEADY_DEADLINE}; past them the last round counts.
     */
    private static double steadyState(String what, ToDoubleFunction<AllocationMeter> round) {
        CompilationMXBean jit = ManagementFactory.getCompilationMXBean();
        long deadline = System.nanoTime() + STEADY_DEADLINE.toNanos();
        double last = Double.NaN;
        for (int r = 1; r <= MAX_ROUNDS && System.nanoTime() < deadline; r++) {
            AllocationMeter meter = new AllocationMeter("epserve-kernel-");
            long compiledBefore = jit.getTotalCompilationTime();
            double perToken = round.applyAsDouble(meter);
            boolean jitQuiet = jit.getTotalCompilationTime() == compiledBefore;
            System.out.printf("allocation: %s, round %d: %.1f bytes/token (%s; JIT %s)%n", what, r, perToken,
                    meter.describe(), jitQuiet ? "quiet" : "compiling");
            if (Math.abs(perToken - last) <= Math.max(8, 0.01 * perToken) && jitQuiet) {
                return Math.min(perToken, last);
            }
            last = perToken;
        }
        return last;
    }
}
