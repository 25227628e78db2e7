package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import java.util.concurrent.CopyOnWriteArrayList;

class RebalancerTest {
    static final int H = InProcessDispatcherTest.H;
    static final int E = InProcessDispatcherTest.E;
    static final boolean[] SPARSE = {true};

    /** Every token routed to experts 0 and 1 (both on worker 0 under contiguous placement), 4 per step. */
    private static RoutingResult skewed(SplittableRandom rnd, int tokens) {
        int[] ids = new int[tokens * 3];
        float[] w = new float[tokens * 3];
        for (int t = 0; t < tokens; t++) {
            ids[t * 3] = 0;
            ids[t * 3 + 1] = 1;
            ids[t * 3 + 2] = 2 + rnd.nextInt(E - 2);
            w[t * 3] = 0.5f;
            w[t * 3 + 1] = 0.3f;
            w[t * 3 + 2] = 0.2f;
        }
        return new RoutingResult(tokens, 3, ids, w);
    }

    @Test
    void onDemandMovesToABalancedEpochAndKeepsEveryBit() {
        ExpertStore store = InProcessDispatcherTest.store(8);
        List<String> names = List.of("a", "b");
        ExpertPlacement p0 = ExpertPlacement.create(SPARSE, E, names, ExpertPlacement.Policy.CONTIGUOUS, 0);
        RoutedTokens routed = new RoutedTokens(SPARSE, E, 32);
        InProcessDispatcher d = new InProcessDispatcher(p0, names.stream().map(n -> new ExpertWorker(n, store, E)).toList(), routed);
        SplittableRandom rnd = new SplittableRandom(3);
        float[] x = DispatchPlanTest.gaussian(rnd, 16 * H);
        RoutingResult r = skewed(rnd, 16);
        float[] before = new float[16 * H];
        for (int i = 0; i < 10; i++) {
            d.dispatch(0, x, H, r, before);
        }
        assertThat(routed.steps()).isEqualTo(10);
        assertThat(routed.window().tokens(0, 0)).isEqualTo(160);
        assertThat(routed.total().tokens(0, 1)).isEqualTo(160);
        CopyOnWriteArrayList<Rebalancer.Outcome> seen = new CopyOnWriteArrayList<>();
        try (Rebalancer rb = new Rebalancer(d, Rebalancer.Settings.onDemand(1), seen::add).start()) {
            double[] was = rb.balancedness();
            Rebalancer.Outcome o = rb.rebalanceNow("test");
            assertThat(o.changed()).as(o.reason()).isTrue();
            assertThat(o.epoch()).isEqualTo(1);
            assertThat(d.placement().epoch()).isEqualTo(1);
            assertThat(d.placement().policy()).isEqualTo(ExpertPlacement.Policy.BALANCED);
            assertThat(o.after()[0]).isGreaterThan(was[0]).isGreaterThan(0.9);
            assertThat(rb.rebalances()).isEqualTo(1);
            assertThat(seen).containsExactly(o);
            // the same window again: same replicas, nothing to do
            assertThat(rb.rebalanceNow("again").changed()).isFalse();
        }
        float[] after = new float[16 * H];
        d.dispatch(0, x, H, r, after);
        for (int i = 0; i < after.length; i++) {
            assertThat(Float.floatToRawIntBits(after[i])).as("element %d", i).isEqualTo(Float.floatToRawIntBits(before[i]));
        }
    }

    @Test
    void aGivenLoadIsPlacedUnderTheSettingsCost() {
        ExpertStore store = InProcessDispatcherTest.store(8);
        List<String> names = List.of("a", "b");
        InProcessDispatcher d = new InProcessDispatcher(ExpertPlacement.create(SPARSE, E, names, ExpertPlacement.Policy.CONTIGUOUS, 0),
                names.stream().map(n -> new ExpertWorker(n, store, E)).toList(), new RoutedTokens(SPARSE, E, 8));
        // nothing routed yet: the load is the caller's (experts 0 and 1, on worker a, hot)
        ExpertLoad load = ExpertLoad.of(E, new long[][] {{900, 800, 100, 100, 100, 100}}, 100);
        ExpertCost cost = new ExpertCost(4);
        try (Rebalancer rb = new Rebalancer(d, Rebalancer.Settings.onDemand(1).withCost(cost), null)) {
            Rebalancer.Outcome o = rb.rebalanceFor(load, "recorded load");
            assertThat(o.changed()).as(o.reason()).isTrue();
            assertThat(d.placement().cost()).isEqualTo(cost);
            assertThat(d.placement().sameReplicas(BalancedPlacement.place(load, names, null, 1, 0, cost))).isTrue();
            assertThat(o.after()[0]).isGreaterThan(o.before()[0]);
        }
    }

    @Test
    void aBelowThresholdTriggerFiresFromTheLoop() throws Exception {
        ExpertStore store = InProcessDispatcherTest.store(8);
        List<String> names = List.of("a", "b");
        RoutedTokens routed = new RoutedTokens(SPARSE, E, 8);
        InProcessDispatcher d = new InProcessDispatcher(ExpertPlacement.create(SPARSE, E, names, ExpertPlacement.Policy.CONTIGUOUS, 0),
                names.stream().map(n -> new ExpertWorker(n, store, E)).toList(), routed);
        SplittableRandom rnd = new SplittableRandom(4);
        float[] x = DispatchPlanTest.gaussian(rnd, 8 * H);
        float[] out = new float[8 * H];
        try (Rebalancer rb = new Rebalancer(d, new Rebalancer.Settings(1, null, 0, 0.9, 5), null).start()) {
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (d.placement().epoch() == 0 && System.nanoTime() < deadline) {
                d.dispatch(0, x, H, skewed(rnd, 8), out);
            }
            assertThat(d.placement().epoch()).isEqualTo(1);
            assertThat(rb.last().reason()).contains("below 0.900");
        }
    }

    @Test
    void windowForgetsOldSteps() {
        RoutedTokens r = new RoutedTokens(SPARSE, E, RoutedTokens.BUCKETS); // one step per bucket
        RoutingResult toZero = new RoutingResult(1, 1, new int[] {0}, new float[] {1});
        RoutingResult toOne = new RoutingResult(1, 1, new int[] {1}, new float[] {1});
        for (int i = 0; i < 3; i++) {
            r.record(0, toZero);
        }
        assertThat(r.window().steps()).as("steps the window covers").isEqualTo(3);
        for (int i = 3; i < RoutedTokens.BUCKETS; i++) {
            r.record(0, toZero);
        }
        assertThat(r.window().tokens(0, 0)).isEqualTo(RoutedTokens.BUCKETS);
        assertThat(r.total(0, 0)).isEqualTo(RoutedTokens.BUCKETS);
        assertThat(r.total(0, E)).as("no such expert").isZero();
        for (int i = 0; i < RoutedTokens.BUCKETS; i++) {
            r.record(0, toOne);
        }
        assertThat(r.window().tokens(0, 0)).isZero();
        assertThat(r.window().tokens(0, 1)).isEqualTo(RoutedTokens.BUCKETS);
        assertThat(r.total().tokens(0, 0)).isEqualTo(RoutedTokens.BUCKETS);
        assertThat(r.window().steps()).isEqualTo(RoutedTokens.BUCKETS);
        assertThat(r.total().steps()).isEqualTo(2L * RoutedTokens.BUCKETS);
        assertThatThrownBy(() -> new RoutedTokens(SPARSE, E, 0)).hasMessageContaining("window");
        assertThatThrownBy(() -> new Rebalancer.Settings(-1, null, 0, 0, 1)).hasMessageContaining("--redundant-experts");
        assertThatThrownBy(() -> new Rebalancer.Settings(0, null, 0, 1.5, 1)).hasMessageContaining("--rebalance-below");
    }
}
