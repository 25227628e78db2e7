package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/** Replica choice of {@link DispatchPlan}: per step for exact partial sums and k ≤ 2, per token otherwise. */
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
    void exactPartialsAndTopTwoSendEachExpertWithAllItsTokensToOneReplicaAndBalance() {
        SplittableRandom rnd = new SplittableRandom(5);
        int tokens = 40;
        RoutingResult r = routing(rnd, tokens, 2);
        float[] x = gaussian(rnd, tokens * H);
        for (int workers : new int[] {2, 3}) {
            ExpertPlacement p = replicated(workers);
            DispatchPlan balanced = DispatchPlan.split(0, x, H, r, p, true);
            int[] load = new int[workers];
            int largest = 0;
            int[] pairs = new int[E];
            for (int i = 0; i < tokens * 2; i++) {
                pairs[r.experts()[i]]++;
            }
            for (int e = 0; e < E; e++) {
                largest = Math.max(largest, pairs[e]);
            }
            Set<Integer>[] by = workersPerExpert(balanced, workers);
            for (int e = 0; e < E; e++) {
                assertThat(by[e]).as("workers of expert %d (%d pairs)", e, pairs[e]).hasSizeLessThanOrEqualTo(1);
            }
            for (int w = 0; w < workers; w++) {
                int n = balanced.tokens(w);
                load[w] = n == 0 ? 0 : balanced.offsets(w)[n];
            }
            int max = IntStream.of(load).max().orElseThrow();
            int min = IntStream.of(load).min().orElseThrow();
            assertThat(max - min).as("pair loads %s", java.util.Arrays.toString(load)).isLessThanOrEqualTo(largest);
            // the per-token rule splits experts over replicas (what the per-step rule avoids)
            Set<Integer>[] perToken = workersPerExpert(DispatchPlan.split(0, x, H, r, p, false), workers);
            assertThat(IntStream.range(0, E).anyMatch(e -> perToken[e].size() > 1)).isTrue();
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
    void threeExpertsPerTokenKeepThePerTokenRule() {
        SplittableRandom rnd = new SplittableRandom(7);
        RoutingResult r = routing(rnd, 30, 3);
        float[] x = gaussian(rnd, 30 * H);
        ExpertPlacement p = replicated(2);
        DispatchPlan a = DispatchPlan.split(0, x, H, r, p, true);
        DispatchPlan b = DispatchPlan.split(0, x, H, r, p, false);
        for (int w = 0; w < 2; w++) {
            assertThat(a.tokens(w)).isEqualTo(b.tokens(w));
            assertThat(java.util.Arrays.copyOf(a.experts(w), a.offsets(w)[a.tokens(w)]))
                    .isEqualTo(java.util.Arrays.copyOf(b.experts(w), b.offsets(w)[b.tokens(w)]));
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
            assertThat(together).as("%d workers: a token with both experts on one worker", workers).isTrue();
            float[] batch = new float[tokens * H];
            d.dispatch(0, x, H, r, batch);
            for (int t = 0; t < tokens; t++) {
                RoutingResult alone = new RoutingResult(1, 2, r.expertsOf(t), r.weightsOf(t));
                float[] y = new float[H];
                d.dispatch(0, java.util.Arrays.copyOfRange(x, t * H, (t + 1) * H), H, alone, y);
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
