package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

class BalancedPlacementTest {
    private static final boolean[] ONE_LAYER = {true};
    /** Loads on which the pair-optimal and the cost-optimal placement differ (2 workers, one spare slot each). */
    private static final long[] CHOOSES_DIFFERENTLY = {52, 51, 56, 59};

    private static List<String> workers(int n) {
        return IntStream.range(0, n).mapToObj(i -> "w" + i).toList();
    }

    private static ExpertLoad load(long... tokens) {
        return ExpertLoad.of(tokens.length, new long[][] {tokens});
    }

    private static double maxLoad(ExpertPlacement p, ExpertLoad load) {
        return IntStream.range(0, p.workerCount()).mapToDouble(w -> p.workerLoads(load, 0)[w]).max().orElseThrow();
    }

    private static double maxCost(ExpertPlacement p, ExpertLoad load, ExpertCost cost) {
        return Arrays.stream(p.workerCosts(load, 0, cost)).max().orElseThrow();
    }

    /**
     * The smallest achievable maximum worker load: every assignment of a non-empty worker subset
     * to each expert within the slots, each expert's load split evenly over its replicas.
     */
    private static double bruteForce(long[] load, int w, int slots) {
        return bruteForce(load, w, slots, ExpertCost.PAIRS, 0);
    }

    /** As {@link #bruteForce(long[], int, int)}, of the workers' cost under a cost model over {@code steps} steps. */
    private static double bruteForce(long[] load, int w, int slots, ExpertCost cost, long steps) {
        int subsets = (1 << w) - 1;
        int e = load.length;
        int[] choice = new int[e];
        double best = Double.MAX_VALUE;
        long total = 1;
        for (int i = 0; i < e; i++) {
            total *= subsets;
        }
        for (long code = 0; code < total; code++) {
            long c = code;
            for (int i = 0; i < e; i++) {
                choice[i] = (int) (c % subsets) + 1;
                c /= subsets;
            }
            int[] used = new int[w];
            double[] wl = new double[w];
            boolean ok = true;
            for (int i = 0; i < e && ok; i++) {
                int bits = Integer.bitCount(choice[i]);
                for (int k = 0; k < w; k++) {
                    if ((choice[i] >> k & 1) != 0) {
                        wl[k] += cost.replica((double) load[i] / bits, steps);
                        ok &= ++used[k] <= slots;
                    }
                }
            }
            if (ok) {
                double m = 0;
                for (double v : wl) {
                    m = Math.max(m, v);
                }
                best = Math.min(best, m);
            }
        }
        return best;
    }

    private static long[] zipf(int e, double s, long seed) {
        long[] t = new long[e];
        for (int i = 0; i < e; i++) {
            t[i] = Math.round(10_000 / Math.pow(i + 1, s));
        }
        // the hot experts spread by a seeded shuffle, as a trained router's are
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = e - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            long x = t[i];
            t[i] = t[j];
            t[j] = x;
        }
        return t;
    }

    @Test
    void uniformLoadIsPerfectlyBalanced() {
        ExpertLoad l = ExpertLoad.uniform(new boolean[] {false, true}, 16);
        ExpertPlacement p = BalancedPlacement.place(l, workers(4), 0, 3);
        assertThat(p.policy()).isEqualTo(ExpertPlacement.Policy.BALANCED);
        assertThat(p.epoch()).isEqualTo(3);
        assertThat(p.balancedness(l)).containsExactly(1.0);
        for (int w = 0; w < 4; w++) {
            assertThat(p.expertsOn(w, 1)).hasSize(4);
        }
    }

    @Test
    void oneHotExpertGetsAReplicaOnEveryWorkerWithSlots() {
        long[] t = new long[8];
        Arrays.fill(t, 10);
        t[5] = 400;
        ExpertLoad l = load(t);
        ExpertPlacement contiguous = ExpertPlacement.create(ONE_LAYER, 8, workers(4), ExpertPlacement.Policy.CONTIGUOUS, 0);
        ExpertPlacement balanced = BalancedPlacement.place(l, workers(4), 1, 1);
        assertThat(balanced.replicaCount(0, 5)).isEqualTo(4);
        // optimum: the hot expert split 4 ways (100 each), the 7 cold ones at most 2 per worker
        assertThat(maxLoad(balanced, l)).isEqualTo(120.0);
        assertThat(balanced.balancedness(l)[0]).isGreaterThan(0.95).isGreaterThan(contiguous.balancedness(l)[0]);
        // without redundant slots (2 per worker, all used) the hot expert shares a worker with one cold one
        ExpertPlacement noSpare = BalancedPlacement.place(l, workers(4), 0, 1);
        assertThat(noSpare.replicaCount(0, 5)).isEqualTo(1);
        assertThat(maxLoad(noSpare, l)).isEqualTo(410);
    }

    @Test
    void matchesBruteForceOnSmallCases() {
        SplittableRandom r = new SplittableRandom(11);
        int cases = 0;
        double worst = 1;
        for (int trial = 0; trial < 40; trial++) {
            int w = 2 + trial % 2;
            int e = w == 2 ? 6 : 5;
            int redundant = trial % 3 == 0 ? 0 : 1;
            long[] t = trial % 4 == 0 ? zipf(e, 1.2, trial) : r.longs(e, 0, 100).toArray();
            ExpertLoad l = load(t);
            ExpertPlacement p = BalancedPlacement.place(l, workers(w), redundant, 0);
            for (int k = 0; k < w; k++) {
                assertThat(p.expertsOn(k, 0).length).isLessThanOrEqualTo((e + w - 1) / w + redundant);
            }
            double opt = bruteForce(t, w, (e + w - 1) / w + redundant);
            double got = maxLoad(p, l);
            assertThat(got).as("loads %s on %d workers, %d spare", Arrays.toString(t), w, redundant)
                    .isGreaterThanOrEqualTo(opt - 1e-9).isLessThanOrEqualTo(opt * 1.10 + 1e-9);
            worst = Math.max(worst, got / opt);
            cases++;
        }
        assertThat(cases).isEqualTo(40);
        assertThat(worst).isLessThan(1.10);
    }

    @Test
    void costAwarePackingMatchesBruteForceOnSmallCases() {
        SplittableRandom r = new SplittableRandom(23);
        double worst = 1;
        for (int trial = 0; trial < 40; trial++) {
            int w = 2 + trial % 2;
            int e = w == 2 ? 6 : 5;
            int redundant = trial % 3 == 0 ? 0 : 1;
            long steps = 10;
            ExpertCost cost = new ExpertCost(1 + trial % 7);
            long[] t = trial % 4 == 0 ? zipf(e, 1.2, trial) : r.longs(e, 0, 200).toArray();
            ExpertLoad l = ExpertLoad.of(e, new long[][] {t}, steps);
            ExpertPlacement p = BalancedPlacement.place(l, workers(w), null, redundant, 0, cost);
            assertThat(p.cost()).isEqualTo(cost);
            assertThat(p.withEpoch(7).cost()).as("a new epoch of the same replicas splits by the same cost").isEqualTo(cost);
            double opt = bruteForce(t, w, (e + w - 1) / w + redundant, cost, steps);
            double got = maxCost(p, l, cost);
            assertThat(got).as("loads %s on %d workers, %d spare, fixed %s pairs", Arrays.toString(t), w, redundant, cost.fixedPairs())
                    .isGreaterThanOrEqualTo(opt - 1e-9).isLessThanOrEqualTo(opt * 1.10 + 1e-9);
            worst = Math.max(worst, got / opt);
        }
        assertThat(worst).isLessThan(1.10);
    }

    @Test
    void aFixedCostPerExpertChangesWhereReplicasGo() {
        // Balancing pairs, the spare slots go to replicas of the two hot experts, which evens the
        // pairs exactly; but each replica costs its worker a fixed part, and under a cost of 12
        // pairs per expert run the busiest worker is then slower than without them.
        long[] t = CHOOSES_DIFFERENTLY;
        int w = 2;
        long steps = 1;
        ExpertCost cost = new ExpertCost(12);
        ExpertLoad l = ExpertLoad.of(t.length, new long[][] {t}, steps);
        int slots = (t.length + w - 1) / w + 1;
        ExpertPlacement byPairs = BalancedPlacement.place(l, workers(w), null, 1, 0, ExpertCost.PAIRS);
        ExpertPlacement byCost = BalancedPlacement.place(l, workers(w), null, 1, 0, cost);
        assertThat(byCost.sameReplicas(byPairs)).isFalse();
        // each is optimal (brute force) for what it balances, and worse at the other's
        assertThat(maxLoad(byPairs, l)).isEqualTo(bruteForce(t, w, slots));
        assertThat(maxCost(byCost, l, cost)).isCloseTo(bruteForce(t, w, slots, cost, steps), within(1e-9));
        assertThat(maxCost(byPairs, l, cost)).isGreaterThan(maxCost(byCost, l, cost));
        assertThat(maxLoad(byCost, l)).isGreaterThan(maxLoad(byPairs, l));
        // the token balancedness stays the figure; the cost balancedness is the one the cost-aware policy raises
        assertThat(byCost.costBalancedness(l, cost)[0]).isGreaterThan(byPairs.costBalancedness(l, cost)[0]);
        assertThat(byPairs.costBalancedness(l, ExpertCost.PAIRS)).containsExactly(byPairs.balancedness(l));
    }

    @Test
    void withoutAStepCountOrAFixedPartTheCostIsThePairs() {
        long[] t = zipf(12, 1.2, 3);
        ExpertPlacement pairs = BalancedPlacement.place(load(t), workers(3), 1, 0);
        ExpertPlacement unknownSteps = BalancedPlacement.place(load(t), workers(3), null, 1, 0, new ExpertCost(50));
        ExpertPlacement noFixed = BalancedPlacement.place(ExpertLoad.of(12, new long[][] {t}, 100), workers(3), null, 1, 0,
                ExpertCost.PAIRS);
        assertThat(unknownSteps.sameReplicas(pairs)).isTrue();
        assertThat(noFixed.sameReplicas(pairs)).isTrue();
    }

    @Test
    void zipfSkewOlmoeShapeReachesNinetyPercentWithOneSpareSlot() {
        long[] t = zipf(64, 1.2, 42);
        ExpertLoad l = load(t);
        double contiguous = ExpertPlacement.create(ONE_LAYER, 64, workers(2), ExpertPlacement.Policy.CONTIGUOUS, 0).balancedness(l)[0];
        double balanced = BalancedPlacement.place(l, workers(2), 1, 0).balancedness(l)[0];
        assertThat(balanced).isGreaterThanOrEqualTo(0.99).isGreaterThan(contiguous);
        double eight = BalancedPlacement.place(l, workers(8), 1, 0).balancedness(l)[0];
        assertThat(eight).isGreaterThanOrEqualTo(0.90);
    }

    @Test
    void sameInputSamePlacement() {
        ExpertLoad l = ExpertLoad.of(32, new long[][] {null, zipf(32, 1.0, 1), zipf(32, 1.5, 2)});
        ExpertPlacement a = BalancedPlacement.place(l, workers(5), List.of("h0", "h0", "h1", "h1", "h1"), 2, 4);
        ExpertPlacement b = BalancedPlacement.place(ExpertLoad.of(32, new long[][] {null, l.layer(1), l.layer(2)}), workers(5),
                List.of("h0", "h0", "h1", "h1", "h1"), 2, 4);
        assertThat(a.sameReplicas(b)).isTrue();
        assertThat(a.describe()).isEqualTo(b.describe());
    }

    @Test
    void hierarchicalKeepsEachGroupsReplicasOnOneHost() {
        long[] t = zipf(16, 1.2, 5);
        ExpertLoad l = load(t);
        List<String> hosts = List.of("a", "a", "b", "b");
        ExpertPlacement p = BalancedPlacement.place(l, workers(4), hosts, 1, 0);
        // 2 hosts -> 2 groups of 8 contiguous experts; every replica of a group on one host
        for (int g = 0; g < 2; g++) {
            Set<String> used = new HashSet<>();
            for (int e = g * 8; e < g * 8 + 8; e++) {
                for (int w : p.replicasOf(0, e)) {
                    used.add(hosts.get(w));
                }
            }
            assertThat(used).as("group %d", g).hasSize(1);
        }
        // and it still balances within hosts
        assertThat(p.balancedness(l)[0]).isGreaterThan(
                ExpertPlacement.create(ONE_LAYER, 16, workers(4), ExpertPlacement.Policy.CONTIGUOUS, 0).balancedness(l)[0]);
        // groups that cannot be cut evenly fall back to the flat policy (still valid)
        ExpertPlacement flat = BalancedPlacement.place(load(zipf(15, 1.2, 5)), workers(4), hosts, 1, 0);
        assertThat(IntStream.range(0, 15).allMatch(e -> flat.replicaCount(0, e) >= 1)).isTrue();
    }

    @Test
    void badInputIsRefusedWithItsName() {
        ExpertLoad l = load(1, 2, 3);
        assertThatThrownBy(() -> BalancedPlacement.place(l, workers(2), -1, 0)).hasMessageContaining("redundant");
        assertThatThrownBy(() -> BalancedPlacement.place(l, workers(2), List.of("a"), 0, 0)).hasMessageContaining("host labels");
        assertThatThrownBy(() -> BalancedPlacement.place(l, List.of(), 0, 0)).hasMessageContaining("worker");
        assertThatThrownBy(() -> ExpertLoad.of(2, new long[][] {{1, -1}})).hasMessageContaining("negative");
        assertThatThrownBy(() -> ExpertLoad.of(2, new long[][] {{1}})).hasMessageContaining("layer 0");
    }

    @Test
    void balancednessIsMeanOverMax() {
        assertThat(ExpertPlacement.balancedness(new double[] {1, 3})).isEqualTo(2.0 / 3);
        assertThat(ExpertPlacement.balancedness(new double[] {0, 0})).isEqualTo(1.0);
        ExpertLoad l = load(30, 10, 10, 10);
        ExpertPlacement c = ExpertPlacement.create(ONE_LAYER, 4, workers(2), ExpertPlacement.Policy.CONTIGUOUS, 0);
        assertThat(c.balancedness(l)).containsExactly(30.0 / 40);
        // an absent layer counts as uniform
        ExpertLoad none = ExpertLoad.of(4, new long[][] {null});
        assertThat(c.balancedness(none)).containsExactly(1.0);
    }
}
