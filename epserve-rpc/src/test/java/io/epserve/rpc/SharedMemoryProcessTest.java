package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Two worker processes on this host behind shared-memory rings ({@link Transport#SHM}): every
 * logit has the single process's bits (plain and with two micro-batches in flight), every
 * request went over a ring, and a worker killed (SIGKILL) in the middle of a generation costs no
 * step and no token: the frontend computes the step, and once the worker is back it is on a
 * ring again.
 */
@Timeout(180)
class SharedMemoryProcessTest {
    static final String NAME = "mixtral";
    LocalWorkerProcesses workers;

    @AfterEach
    void stopWorkers() {
        if (workers != null) {
            workers.close();
        }
    }

    private GrpcExpertDispatcher dispatcher(LoadedModel ref, ExpertPlacement.Policy policy) {
        ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), workers.addresses(), policy,
                EquivalenceChecks.EPOCHS.incrementAndGet());
        return new GrpcExpertDispatcher(Fixtures.model(NAME), p,
                GrpcExpertDispatcher.Config.defaults().withDeadline(FailoverTest.DEADLINE).withTransport(Transport.SHM),
                GrpcExpertDispatcher.TCP);
    }

    @Test
    void twoWorkerProcessesOverSharedMemoryGiveTheSingleProcessBits() {
        workers = WorkerProcesses.start(2, Fixtures.model(NAME));
        List<Fixtures.Case> cases = Fixtures.cases(NAME);
        try (LoadedModel ref = Fixtures.load(NAME)) {
            List<Fixtures.Run> want = cases.stream().map(c -> Fixtures.run(ref.transformer(), c)).toList();
            // round-robin splits every token's experts over both workers
            try (GrpcExpertDispatcher d = dispatcher(ref, ExpertPlacement.Policy.ROUND_ROBIN).start()) {
                assertThat(d.ringUse().workersOnRing()).as("workers on a ring after start").isEqualTo(2);
                MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                for (int c = 0; c < cases.size(); c++) {
                    Fixtures.Run got = Fixtures.run(t, cases.get(c));
                    assertThat(Fixtures.maxAbsDiff(got.logits(), want.get(c).logits())).as("case %d: max |Δlogit|", c).isZero();
                    assertThat(got.generated()).as("case %d: greedy tokens", c).containsExactly(want.get(c).generated());
                }
                t.setOverlap(true);
                for (int c = 0; c < cases.size(); c++) {
                    int[] tokens = cases.get(c).tokens();
                    float[] got = t.forward(t.newCache(tokens.length), tokens, tokens.length, true, RoutingListener.NONE);
                    assertThat(Fixtures.maxAbsDiff(got, want.get(c).logits())).as("case %d, overlap: max |Δlogit|", c).isZero();
                }
                long calls = d.stats().workers().stream().mapToLong(DispatchStats.Worker::calls).sum();
                assertThat(calls).isPositive();
                assertThat(d.ringUse().calls()).as("requests over the rings").isEqualTo(calls);
                assertThat(d.stats().workers()).allSatisfy(w -> assertThat(w.failures()).isZero());
            }
        }
    }

    @Test
    void aWorkerKilledBehindARingLosesNoStepAndComesBackOnARing() throws Exception {
        int[] prompt = Fixtures.cases(NAME).get(1).tokens();
        workers = WorkerProcesses.start(2, Fixtures.model(NAME));
        try (LoadedModel ref = Fixtures.load(NAME)) {
            int[] want = Fixtures.greedy(ref.transformer(), prompt, FailoverTest.TOKENS);
            try (GrpcExpertDispatcher d = dispatcher(ref, ExpertPlacement.Policy.CONTIGUOUS).start()
                    .withFailover(() -> InProcessDispatcher.single(ref.weights(), ref.config().sparseLayers(), ref.config().numExperts()),
                            Duration.ofMillis(100))) {
                MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                long[] ringCallsAtRestart = new long[1];
                int[] got = FailoverTest.generate(t, prompt, step -> {
                    if (step == 4) {
                        assertThat(d.ringUse().workersOnRing()).isEqualTo(2);
                        workers.kill(1);
                    } else if (step == 5) {
                        assertThat(d.failoverStats().failovers()).as("the step after the kill failed over").isEqualTo(1);
                        assertThat(d.failoverStats().lastFailure()).contains(workers.address(1));
                    } else if (step == 8) {
                        workers.restart(1);
                        FailoverTest.await("the workers answer again", () -> !d.failoverStats().holding());
                        ringCallsAtRestart[0] = d.ringUse().calls();
                    }
                });
                assertThat(got).as("tokens through the kill and the restart").containsExactly(want);
                assertThat(d.failoverStats().localDispatches()).isPositive();
                assertThat(d.ringUse().workersOnRing()).as("the restarted worker is on a ring again").isEqualTo(2);
                assertThat(d.ringUse().calls()).as("requests over the rings after the restart").isGreaterThan(ringCallsAtRestart[0]);
            }
        }
    }
}
