package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.moe.ExpertPlacement;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Through a GrpcExpertDispatcher over 1, 2 and 4 workers, every
 * fixture's logits equal the single-process engine's to ≤ 1e-5 and greedy decoding gives the same
 * 16 tokens. Transport-agnostic: the caller passes worker addresses and a channel factory.
 */
final class EquivalenceChecks {
    private EquivalenceChecks() {}

    /** Placement epochs grow across every dispatcher of the test JVM, as a frontend's would. */
    static final AtomicLong EPOCHS = new AtomicLong();

    static void sameAsSingleProcess(String name, List<String> workers, GrpcExpertDispatcher.ChannelFactory channels) {
        List<Fixtures.Case> cases = Fixtures.cases(name);
        try (LoadedModel ref = Fixtures.load(name)) {
            List<Fixtures.Run> want = cases.stream().map(c -> Fixtures.run(ref.transformer(), c)).toList();
            for (int c = 0; c < cases.size(); c++) {
                assertThat(want.get(c).generated()).as("%s case %d: single process vs reference", name, c)
                        .containsExactly(cases.get(c).generated());
            }
            for (int w : new int[] {1, 2, 4}) {
                // both policies: round-robin splits every token's experts over workers
                ExpertPlacement.Policy policy = w == 2 ? ExpertPlacement.Policy.ROUND_ROBIN : ExpertPlacement.Policy.CONTIGUOUS;
                ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(),
                        workers.subList(0, w), policy, EPOCHS.incrementAndGet());
                try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p,
                        GrpcExpertDispatcher.Config.defaults(), channels).start()) {
                    MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                    for (int c = 0; c < cases.size(); c++) {
                        Fixtures.Run got = Fixtures.run(t, cases.get(c));
                        assertThat(Fixtures.maxAbsDiff(got.logits(), want.get(c).logits()))
                                .as("%s, %d worker(s), case %d: max |Δlogit| vs single process", name, w, c).isZero();
                        assertThat(got.generated()).as("%s, %d worker(s), case %d: greedy tokens", name, w, c)
                                .containsExactly(want.get(c).generated());
                    }
                    // two-batch overlap: two micro-batches' dispatches in flight at once on the same streams
                    t.setOverlap(true);
                    for (int c = 0; c < cases.size(); c++) {
                        int[] tokens = cases.get(c).tokens();
                        float[] got = t.forward(t.newCache(tokens.length), tokens, tokens.length, true, RoutingListener.NONE);
                        assertThat(Fixtures.maxAbsDiff(got, want.get(c).logits()))
                                .as("%s, %d worker(s), case %d, overlap: max |Δlogit| vs single process", name, w, c).isZero();
                    }
                    DispatchStats s = d.stats();
                    assertThat(s.dispatches()).isPositive();
                    for (DispatchStats.Worker ws : s.workers()) {
                        assertThat(ws.calls()).as("calls of %s", ws.address()).isPositive();
                        assertThat(ws.failures()).isZero();
                        assertThat(ws.bytesReceived()).isPositive();
                    }
                }
            }
        }
    }
}
