package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.Rebalancer;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.LayerExperts;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A live re-placement under traffic, with two worker processes: a steady stream of greedy
 * requests (Qwen3-MoE fixture, 4 experts per token) runs while the placement moves from
 * contiguous to balanced (hot experts replicated). No request fails, every request's logits and
 * greedy tokens equal the single-process engine's bit for bit before, during and after the
 * change, the workers end holding exactly the new epoch's experts, and the largest dispatch time
 * during the change is recorded against the largest before it.
 */
@Timeout(300)
class LiveReplacementProcessTest {
    private static final String MODEL = "qwen3_moe";

    /** Times every dispatch, and marks which ran while a change was under way. */
    private static final class Timed implements ExpertDispatcher {
        final GrpcExpertDispatcher inner;
        volatile boolean changing;
        long maxBefore;
        long maxDuring;
        int during;

        Timed(GrpcExpertDispatcher inner) {
            this.inner = inner;
        }

        @Override
        public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
            boolean c = changing;
            long t0 = System.nanoTime();
            inner.dispatch(layer, hidden, hiddenSize, routing, out);
            long t = System.nanoTime() - t0;
            synchronized (this) {
                if (c) {
                    maxDuring = Math.max(maxDuring, t);
                    during++;
                } else {
                    maxBefore = Math.max(maxBefore, t);
                }
            }
        }
    }

    @Test
    void requestsKeepTheirBitsWhileThePlacementMovesLive() throws Exception {
        List<Fixtures.Case> cases = Fixtures.cases(MODEL);
        try (LoadedModel ref = Fixtures.load(MODEL);
             LocalWorkerProcesses procs = WorkerProcesses.start(2, Fixtures.model(MODEL))) {
            List<Fixtures.Run> want = cases.stream().map(c -> Fixtures.run(ref.transformer(), c)).toList();
            ExpertPlacement contiguous = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(),
                    procs.addresses(), ExpertPlacement.Policy.CONTIGUOUS, 1);
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(MODEL), contiguous,
                    GrpcExpertDispatcher.Config.defaults(), GrpcExpertDispatcher.TCP).start()) {
                Timed timed = new Timed(d);
                MoeTransformer t = new MoeTransformer(ref.weights(), timed, MoeTransformer.RouterChoice.LEARNED);
                // traffic before the change fills the load window
                int served = 0;
                for (int i = 0; i < 2 * cases.size(); i++, served++) {
                    check(t, cases, want, served, "before");
                    if (i == cases.size() - 1) {
                        timed.maxBefore = 0; // the first round warms up connections and the JIT
                    }
                }
                Rebalancer rb = new Rebalancer(d, Rebalancer.Settings.onDemand(1), null);
                timed.changing = true;
                CompletableFuture<Rebalancer.Outcome> change = CompletableFuture.supplyAsync(() -> rb.rebalanceNow("test"));
                int duringChange = 0;
                while (!change.isDone()) {
                    check(t, cases, want, served++, "during");
                    duringChange++;
                }
                Rebalancer.Outcome o = change.get(60, TimeUnit.SECONDS);
                timed.changing = false;
                assertThat(o.changed()).as(o.reason()).isTrue();
                assertThat(d.placement().epoch()).isEqualTo(2);
                assertThat(d.placement().policy()).isEqualTo(ExpertPlacement.Policy.BALANCED);
                assertThat(Arrays.stream(d.placement().balancedness(d.routedTokens().window())).min().orElseThrow())
                        .isGreaterThan(Arrays.stream(contiguous.balancedness(d.routedTokens().window())).min().orElseThrow());
                for (int i = 0; i < cases.size(); i++, served++) {
                    check(t, cases, want, served, "after");
                }
                // the first Compute of epoch 2 made each worker drop epoch 1: it holds exactly its new share
                for (int w = 0; w < 2; w++) {
                    InfoResponse info = d.info(w);
                    assertThat(info.getEpoch()).isEqualTo(2);
                    for (LayerExperts le : info.getLayersList()) {
                        assertThat(le.getExpertsList().stream().mapToInt(Integer::intValue).toArray())
                                .as("worker %d, layer %d", w, le.getLayer()).containsExactly(d.placement().expertsOn(w, le.getLayer()));
                    }
                }
                assertThat(d.stats().workers()).allSatisfy(s -> assertThat(s.failures()).isZero());
                System.out.printf("live re-placement: %.3f s, %d requests during it (%d dispatches), largest dispatch %.2f ms "
                                + "during vs %.2f ms before%n", o.seconds(), duringChange, timed.during, timed.maxDuring / 1e6,
                        timed.maxBefore / 1e6);
                assertThat(timed.maxDuring).isLessThan(TimeUnit.SECONDS.toNanos(10));
            }
        }
    }

    private static void check(MoeTransformer t, List<Fixtures.Case> cases, List<Fixtures.Run> want, int i, String when) {
        int c = i % cases.size();
        Fixtures.Run got = Fixtures.run(t, cases.get(c));
        assertThat(Fixtures.maxAbsDiff(got.logits(), want.get(c).logits())).as("%s the change, request %d: max |Δlogit|", when, i)
                .isZero();
        assertThat(got.generated()).as("%s the change, request %d: greedy tokens", when, i).containsExactly(want.get(c).generated());
    }
}
