package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * With real processes: killing a worker during generation makes the next step fail
 * with a WorkerException naming it within the deadline; once a worker is back on the same port
 * the same dispatcher re-assigns it by itself and generation goes on, with the same tokens.
 */
@Timeout(120)
class WorkerDeathTest {
    static final Duration DEADLINE = Duration.ofSeconds(2);
    LocalWorkerProcesses workers;

    @AfterEach
    void stopWorkers() {
        if (workers != null) {
            workers.close();
        }
    }

    @Test
    void killedWorkerFailsTheStepWithinTheDeadlineAndARestartedOneIsReassigned() {
        String name = "mixtral";
        Fixtures.Case c = Fixtures.cases(name).get(1);
        workers = WorkerProcesses.start(2, Fixtures.model(name));
        try (LoadedModel ref = Fixtures.load(name)) {
            int[] want = Fixtures.greedy(ref.transformer(), c.tokens(), 8);
            ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), workers.addresses(),
                    ExpertPlacement.Policy.ROUND_ROBIN, EquivalenceChecks.EPOCHS.incrementAndGet());
            // warm both sides (class loading, JIT) under the default deadline: this test times deadlines, not cold starts;
            // closing releases the workers to the next frontend
            try (GrpcExpertDispatcher warm = new GrpcExpertDispatcher(Fixtures.model(name), p, GrpcExpertDispatcher.Config.defaults(),
                    GrpcExpertDispatcher.TCP).start()) {
                Fixtures.greedy(new MoeTransformer(ref.weights(), warm, MoeTransformer.RouterChoice.LEARNED), c.tokens(), 2);
            }
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p,
                    GrpcExpertDispatcher.Config.defaults().withDeadline(DEADLINE), GrpcExpertDispatcher.TCP).start()) {
                MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                KvCache cache = t.newCache(c.tokens().length + want.length);
                float[] logits = t.forward(cache, c.tokens(), c.tokens().length, false, RoutingListener.NONE);
                int[] got = new int[want.length];
                int i = 0;
                for (; i < 3; i++) {
                    got[i] = Fixtures.argmax(logits);
                    logits = t.forward(cache, new int[] {got[i]}, 1, false, RoutingListener.NONE);
                }

                String victim = workers.address(1);
                workers.kill(1);
                got[i] = Fixtures.argmax(logits);
                int next = got[i];
                long t0 = System.nanoTime();
                assertThatThrownBy(() -> t.forward(cache, new int[] {next}, 1, false, RoutingListener.NONE))
                        .isInstanceOf(WorkerException.class)
                        .hasMessageContaining("worker " + victim)
                        .hasMessageContaining("layer ")
                        .satisfies(e -> assertThat(((WorkerException) e).worker()).isEqualTo(victim))
                        .satisfies(e -> assertThat(((WorkerException) e).kind()).isEqualTo(WorkerException.Kind.UNAVAILABLE));
                long millis = (System.nanoTime() - t0) / 1_000_000;
                assertThat(millis).as("time to fail").isLessThan(DEADLINE.toMillis() + 1000);
                // still down: the next step fails again, still within the deadline, still naming it
                assertThatThrownBy(() -> t.forward(cache, new int[] {next}, 1, false, RoutingListener.NONE))
                        .isInstanceOf(WorkerException.class).hasMessageContaining("worker " + victim);

                assertThat(workers.restart(1)).isEqualTo(victim);
                // the failed step did not advance the cache: run it again, then go on
                logits = forwardAfterRecovery(t, cache, next);
                for (i = i + 1; i < 6; i++) {
                    got[i] = Fixtures.argmax(logits);
                    logits = t.forward(cache, new int[] {got[i]}, 1, false, RoutingListener.NONE);
                }

                // a worker that hangs (SIGSTOP: the connection stays up, nothing answers) fails the step at the deadline
                long pid = workers.process(0).pid();
                signal("STOP", pid);
                got[i] = Fixtures.argmax(logits);
                int stuck = got[i];
                try {
                    long t1 = System.nanoTime();
                    assertThatThrownBy(() -> t.forward(cache, new int[] {stuck}, 1, false, RoutingListener.NONE))
                            .isInstanceOf(WorkerException.class)
                            .hasMessageMatching("worker " + Pattern.quote(workers.address(0))
                                    + " did not answer layer \\d+ within " + DEADLINE.toMillis() + " ms");
                    assertThat((System.nanoTime() - t1) / 1_000_000).isBetween(DEADLINE.toMillis() - 10, DEADLINE.toMillis() + 1000);
                } finally {
                    signal("CONT", pid);
                }
                logits = forwardAfterRecovery(t, cache, stuck);
                for (i = i + 1; i < want.length; i++) {
                    got[i] = Fixtures.argmax(logits);
                    logits = t.forward(cache, new int[] {got[i]}, 1, false, RoutingListener.NONE);
                }
                assertThat(got).containsExactly(want);
                // + possible cold-start deadlines after the restart / resume
                assertThat(d.stats().workers().get(1).failures()).isBetween(2L, 1L + RECOVERY_TRIES);
                assertThat(d.stats().workers().get(0).failures()).isBetween(1L, (long) RECOVERY_TRIES);
                assertThat(d.info(1).getEpoch()).isEqualTo(p.epoch());
            }
        }
    }

    /** Tries {@link #forwardAfterRecovery} allows for a deadline (see there). */
    static final int RECOVERY_TRIES = 4;

    /**
     * The first step after a worker came back. A freshly started (or just resumed) worker JVM runs
     * its first calls cold (class loading, interpreter), which on a loaded machine can exceed the
     * test's short deadline: a few more tries are allowed for a deadline, never for any other failure.
     */
    private static float[] forwardAfterRecovery(MoeTransformer t, KvCache cache, int token) {
        for (int attempt = 1; ; attempt++) {
            try {
                return t.forward(cache, new int[] {token}, 1, false, RoutingListener.NONE);
            } catch (WorkerException e) {
                if (e.kind() != WorkerException.Kind.DEADLINE || attempt == RECOVERY_TRIES) {
                    throw e;
                }
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
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    @Test
    void workerIsAssignedAndAnswersInfo() {
        String name = "qwen3_moe";
        workers = WorkerProcesses.start(1, Fixtures.model(name));
        try (LoadedModel ref = Fixtures.load(name)) {
            ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), List.of(workers.address(0)),
                    ExpertPlacement.Policy.CONTIGUOUS, EquivalenceChecks.EPOCHS.incrementAndGet());
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p, GrpcExpertDispatcher.Config.defaults()).start()) {
                var info = d.info(0);
                assertThat(info.getAssigned()).isTrue();
                assertThat(info.getExpertCount()).isEqualTo(p.expertCountOn(0));
                assertThat(info.getResidentBytes()).isPositive();
                assertThat(info.getWorkerName()).isEqualTo(workers.address(0));
            }
        }
    }
}
