package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelExperts;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * No step lost with real worker processes: a worker killed (SIGKILL) or hung (SIGSTOP) in the
 * middle of a generation makes the frontend compute the step itself, every token equal to the
 * single-process engine's; once the worker answers again the workers compute the steps again.
 */
@Timeout(180)
class FailoverTest {
    static final Duration DEADLINE = Duration.ofSeconds(10);
    static final int TOKENS = 24;
    LocalWorkerProcesses workers;

    @AfterEach
    void stopWorkers() {
        if (workers != null) {
            workers.close();
        }
    }

    /** Greedy generation one step at a time; {@code between} runs before step i's forward. */
    interface Between {
        void before(int step) throws Exception;
    }

    static int[] generate(MoeTransformer t, int[] prompt, Between between) throws Exception {
        KvCache cache = t.newCache(prompt.length + TOKENS);
        float[] logits = t.forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
        int[] got = new int[TOKENS];
        for (int i = 0; i < TOKENS; i++) {
            got[i] = Fixtures.argmax(logits);
            if (i + 1 < TOKENS) {
                between.before(i);
                logits = t.forward(cache, new int[] {got[i]}, 1, false, RoutingListener.NONE);
            }
        }
        return got;
    }

    static void await(String what, BooleanSupplier condition) {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("not within 60 s: " + what);
            }
            LockSupport.parkNanos(5_000_000); // polls the condition; the deadline bounds the wait
        }
    }

    @Test
    void aKilledThenAHungWorkerLoseNoStepAndChangeNoToken() throws Exception {
        String name = "mixtral";
        int[] prompt = Fixtures.cases(name).get(1).tokens();
        workers = WorkerProcesses.start(2, Fixtures.model(name));
        try (LoadedModel ref = Fixtures.load(name)) {
            int[] want = Fixtures.greedy(ref.transformer(), prompt, TOKENS);
            ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), workers.addresses(),
                    ExpertPlacement.Policy.CONTIGUOUS, EquivalenceChecks.EPOCHS.incrementAndGet());
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p,
                    GrpcExpertDispatcher.Config.defaults().withDeadline(DEADLINE), GrpcExpertDispatcher.TCP).start()
                    .withFailover(() -> ModelExperts.frontendDispatcher(Fixtures.model(name), ref.config(), ref.weights(), null),
                            Duration.ofMillis(100))) {
                MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                long[] callsAtRestart = new long[1];
                int[] got = generate(t, prompt, step -> {
                    if (step == 4) {
                        workers.kill(1);
                    } else if (step == 5) {
                        assertThat(d.failoverStats().failovers()).as("the step after the kill failed over").isEqualTo(1);
                        assertThat(d.failoverStats().holding()).isTrue();
                        assertThat(d.failoverStats().lastFailure()).contains(workers.address(1));
                    } else if (step == 8) {
                        workers.restart(1);
                        await("the workers answer again", () -> !d.failoverStats().holding());
                        callsAtRestart[0] = d.stats().workers().get(1).calls();
                    } else if (step == 14) {
                        assertThat(d.stats().workers().get(1).calls()).as("worker 1 computes again").isGreaterThan(callsAtRestart[0]);
                        await("not holding", () -> !d.failoverStats().holding());
                        signal("STOP", workers.process(0).pid());
                    } else if (step == 15) {
                        signal("CONT", workers.process(0).pid());
                        assertThat(d.failoverStats().failovers()).as("the hung worker's step failed over").isGreaterThanOrEqualTo(2);
                    }
                });
                assertThat(got).as("tokens through kill, restart and hang").containsExactly(want);
                assertThat(d.failoverStats().localDispatches()).isPositive();
            }
        }
    }

    private static void signal(String signal, long pid) {
        try {
            Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(pid)).inheritIO().start();
            assertThat(kill.waitFor(10, TimeUnit.SECONDS)).isTrue();
            assertThat(kill.exitValue()).as("kill -%s %d", signal, pid).isZero();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }  catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }
}
