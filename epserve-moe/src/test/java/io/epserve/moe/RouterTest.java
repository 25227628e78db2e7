package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import java.util.Arrays;
import org.junit.jupiter.api.Test;

class RouterTest {

    @Test
    void softmaxTopKPicksLargestAndRenormalises() {
        float[] logits = {0f, 2f, 1f, 3f, -1f, 2f};
        RoutingResult r = new SoftmaxTopKRouter(6, 2, true).route(logits, new int[1], 1);
        assertThat(r.expertsOf(0)).containsExactly(3, 1); // tie 1 vs 5 goes to the lower id
        double e3 = Math.exp(3);
        double e2 = Math.exp(2);
        assertThat(r.weight(0, 0)).isCloseTo((float) (e3 / (e3 + e2)), within(1e-6f));
        assertThat(r.weight(0, 0) + r.weight(0, 1)).isCloseTo(1f, within(1e-6f));
        RoutingResult raw = new SoftmaxTopKRouter(6, 2, false).route(logits, new int[1], 1);
        double z = 0;
        for (float l : logits) {
            z += Math.exp(l);
        }
        assertThat(raw.weight(0, 0)).isCloseTo((float) (e3 / z), within(1e-6f));
    }

    @Test
    void groupedSigmoidMasksLosingGroupsAndScales() {
        // 8 experts in 4 groups of 2; keep the best 2 groups; top-2 experts.
        float[] logits = {5f, -5f, 0f, 0f, 1f, 1f, -3f, 4f};
        float[] bias = new float[8];
        bias[2] = 10f; // biased choice pulls expert 2's group in, but its weight stays unbiased
        RoutingResult r = new GroupedSigmoidRouter(8, 2, 4, 2, bias, true, 2.5f).route(logits, new int[1], 1);
        int[] ex = r.expertsOf(0).clone();
        Arrays.sort(ex);
        // group sums of the two best biased scores: g0 ≈ 1.0, g1 = 11, g2 ≈ 1.46, g3 ≈ 1.03, so groups 1
        // and 2 stay eligible and expert 0 (the best unbiased score) is masked out.
        assertThat(ex).containsExactly(2, 4);
        double s2 = 0.5;
        double s4 = 1 / (1 + Math.exp(-1));
        int slot2 = r.expert(0, 0) == 2 ? 0 : 1;
        assertThat((double) r.weight(0, slot2)).isCloseTo(s2 / (s2 + s4) * 2.5, within(1e-6));
    }

    @Test
    void hashRouterIsDeterministicDistinctAndBalanced() {
        HashRouter h = new HashRouter(8, 2, HashRouter.DEFAULT_SEED);
        int[] tokens = new int[4000];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = i;
        }
        RoutingResult a = h.route(null, tokens, tokens.length);
        RoutingResult b = h.route(null, tokens, tokens.length);
        assertThat(a.experts()).containsExactly(b.experts());
        int[] load = new int[8];
        for (int t = 0; t < tokens.length; t++) {
            assertThat(a.expert(t, 0)).isNotEqualTo(a.expert(t, 1));
            assertThat(a.weight(t, 0)).isEqualTo(0.5f);
            load[a.expert(t, 0)]++;
            load[a.expert(t, 1)]++;
        }
        for (int l : load) {
            assertThat(l).isBetween(900, 1100); // 1000 expected per expert
        }
        RoutingResult other = new HashRouter(8, 2, 99).route(null, tokens, tokens.length);
        assertThat(other.experts()).isNotEqualTo(a.experts());
        assertThat(h.needsLogits()).isFalse();
    }

    @Test
    void groupedSoftmaxKeepsTheGroupsWithTheBestExpertAndScalesUnnormalised() {
        // 8 experts in 4 groups of 2; V2's group score is the group's best softmax score
        float[] logits = {3f, -9f, 2.5f, 2.5f, 2.9f, -9f, 0f, 0f};
        RoutingResult r = new GroupedSoftmaxRouter(8, 2, 4, 2, false, 16f).route(logits, new int[1], 1);
        int[] ex = r.expertsOf(0).clone();
        Arrays.sort(ex);
        // groups 0 (best 3.0) and 2 (best 2.9) stay; group 1's two 2.5s lose although they beat 2.9's partner
        assertThat(ex).containsExactly(0, 4);
        double z = 0;
        for (float l : logits) {
            z += Math.exp(l);
        }
        int slot0 = r.expert(0, 0) == 0 ? 0 : 1;
        assertThat((double) r.weight(0, slot0)).isCloseTo(Math.exp(3) / z * 16, within(1e-5));
        // one group: plain greedy, the two best experts overall
        RoutingResult greedy = new GroupedSoftmaxRouter(8, 2, 1, 1, true, 1f).route(logits, new int[1], 1);
        assertThat(greedy.expertsOf(0)).containsExactly(0, 4);
        assertThat(greedy.weight(0, 0) + greedy.weight(0, 1)).isCloseTo(1f, within(1e-6f));
    }

    @Test
    void topKSoftmaxSoftmaxesOnlyTheChosenLogits() {
        float[] logits = {0f, 2f, 1f, 3f};
        RoutingResult r = new TopKSoftmaxRouter(4, 2).route(logits, new int[1], 1);
        assertThat(r.expertsOf(0)).containsExactly(3, 1);
        assertThat((double) r.weight(0, 0)).isCloseTo(Math.exp(3) / (Math.exp(3) + Math.exp(2)), within(1e-6));
        assertThat(r.weight(0, 0) + r.weight(0, 1)).isCloseTo(1f, within(1e-6f));
    }
}
