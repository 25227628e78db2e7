package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Replica choice of {@link DispatchPlan}: per step (split by load) for exact partial sums, per token otherwise. */
class DispatchPlanTest {
    static final int H = InProcessDispatcherTest.H;
    static final int E = InProcessDispatcherTest.E;

    static ExpertPlacement replicated(int workers) {
        List<String> names = IntStream.range(0, workers).mapToObj(i -> "w" + i).toList();
        return ExpertPlacement.create(new boolean[] {true}, E, names, ExpertPlacement.Policy.REPLICATED, 0);
    }

    static RoutingResult routing(SplittableRandom rnd, int tokens, int k) {
        float[] logits = new float[tokens * E];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) rnd.nextGaussian();
        }
        return new SoftmaxTopKRouter(E, k, true).route(logits, new int[tokens], tokens);
    }

    static float[] gaussian(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        return x;
    }

    /** expert -> the workers that got some of its tokens. */
    static Set<Integer>[] workersPerExpert(DispatchPlan p, int workers) {
        @SuppressWarnings("unchecked")
        Set<Integer>[] by = new Set[E];
        for (int e = 0; e < E; e++) {
            by[e] = new HashSet<>();
        }
        for (int w = 0; w < workers; w++) {
            int n = p.tokens(w);
            if (n == 0) {
                continue;
            }
            int[] ex = p.experts(w);
            for (int i = 0; i < p.offsets(w)[n]; i++) {
                by[ex[i]].add(w);
            }
        }
        return by;
    }

    @Test
    void exactPartialsSplitReplicatedExpertsSoThatWorkersEndTheStepEven() {
        SplittableRandom rnd = new SplittableRandom(5);
        int tokens = 40;
        for (int k : new int[] {2, 3}) {
            RoutingResult r = routing(rnd, tokens, k);
            float[] x = gaussian(rnd, tokens * H);
            for (int workers : new int[] {2, 3}) {
                DispatchPlan balanced = DispatchPlan.split(0, x, H, r, replicated(workers), true);
                int[] load = new int[workers];
                for (int w = 0; w < workers; w++) {
                    int n = balanced.tokens(w);
                    load[w] = n == 0 ? 0 : balanced.offsets(w)[n];
                }
                assertThat(IntStream.of(load).sum()).isEqualTo(tokens * k);
                int max = IntStream.of(load).max().orElseThrow();
                int min = IntStream.of(load).min().orElseThrow();
                assertThat(max - min).as("top-%d pair loads %s", k, Arrays.toString(load)).isLessThanOrEqualTo(1);
            }
        }
    }

    @Test
    void oneTokensTwoExpertsGoToTwoWorkers() {
        SplittableRandom rnd = new SplittableRandom(6);
        for (int i = 0; i < 50; i++) {
            RoutingResult r = routing(rnd, 1, 2);
            DispatchPlan plan = DispatchPlan.split(0, gaussian(rnd, H), H, r, replicated(2), true);
            assertThat(plan.tokens(0)).isEqualTo(1);
            assertThat(plan.tokens(1)).isEqualTo(1);
        }
    }

    @Test
    void withoutExactPartialsThreeExpertsPerTokenKeepThePerTokenRule() {
        SplittableRandom rnd = new SplittableRandom(7);
        RoutingResult r = routing(rnd, 30, 3);
        float[] x = gaussian(rnd, 30 * H);
        ExpertPlacement p = replicated(2);
        DispatchPlan a = DispatchPlan.split(0, x, H, r, p, false);
        // the per-token rule: each token alone gives the same grouping as in its batch
        for (int t = 0; t < 30; t++) {
            DispatchPlan one = DispatchPlan.split(0, Arrays.copyOfRange(x, t * H, (t + 1) * H), H,
                    new RoutingResult(1, 3, r.expertsOf(t), r.weightsOf(t)), p, false);
            for (int w = 0; w < 2; w++) {
                int row = -1;
                for (int i = 0; i < a.tokens(w); i++) {
                    if (a.rows(w)[i] == t) {
                        row = i;
                    }
                }
                int pairsInBatch = row < 0 ? 0 : a.offsets(w)[row + 1] - a.offsets(w)[row];
                int pairsAlone = one.tokens(w) == 0 ? 0 : one.offsets(w)[1];
                assertThat(pairsInBatch).as("token %d on worker %d", t, w).isEqualTo(pairsAlone);
            }
        }
    }

    /**
     * The per-step choice depends on the batch, the result must not: each token's output, bitwise,
     * dispatched alone, in its batch and through one worker.
     */
    @Test
    void perStepChoiceKeepsEveryTokensBitsWhateverItsBatch() {
        ExpertStore s = InProcessDispatcherTest.store(8);
        SplittableRandom rnd = new SplittableRandom(9);
        int tokens = 23;
        RoutingResult r = routing(rnd, tokens, 2);
        float[] x = gaussian(rnd, tokens * H);
        sameBitsInAnyBatchAndPlacement(s, rnd, tokens, r, x, true);
        RoutingResult r8 = routing(rnd, tokens, 6);
        sameBitsInAnyBatchAndPlacement(s, rnd, tokens, r8, x, false);
    }

    private void sameBitsInAnyBatchAndPlacement(ExpertStore s, SplittableRandom rnd, int tokens, RoutingResult r, float[] x,
                                                boolean checkTogether) {
        int k = r.k();
        float[] one = new float[tokens * H];
        InProcessDispatcher.single(s, new boolean[] {true}, E).dispatch(0, x, H, r, one);
        for (int workers : new int[] {2, 3}) {
            ExpertPlacement p = replicated(workers);
            List<ExpertWorker> ws = p.workers().stream().map(n -> new ExpertWorker(n, s, E)).toList();
            InProcessDispatcher d = new InProcessDispatcher(p, ws);
            // the batch puts some token's two experts on one worker (alone, they go to two)
            DispatchPlan plan = DispatchPlan.split(0, x, H, r, p, true);
            boolean together = false;
            for (int w = 0; w < workers; w++) {
                for (int i = 0; i < plan.tokens(w); i++) {
                    together |= plan.offsets(w)[i + 1] - plan.offsets(w)[i] == 2;
                }
            }
            assertThat(together || !checkTogether).as("%d workers: a token with both experts on one worker", workers).isTrue();
            float[] batch = new float[tokens * H];
            d.dispatch(0, x, H, r, batch);
            for (int t = 0; t < tokens; t++) {
                RoutingResult alone = new RoutingResult(1, k, r.expertsOf(t), r.weightsOf(t));
                float[] y = new float[H];
                d.dispatch(0, Arrays.copyOfRange(x, t * H, (t + 1) * H), H, alone, y);
                for (int i = 0; i < H; i++) {
                    int at = t * H + i;
                    assertThat(Float.floatToRawIntBits(batch[at])).as("%d workers, token %d [%d] in batch vs one worker", workers, t, i)
                            .isEqualTo(Float.floatToRawIntBits(one[at]));
                    assertThat(Float.floatToRawIntBits(y[i])).as("%d workers, token %d [%d] alone vs one worker", workers, t, i)
                            .isEqualTo(Float.floatToRawIntBits(one[at]));
                }
            }
        }
    }
}
