package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class ExpertPlacementTest {
    private static final boolean[] LAYERS = {false, true, true};

    @Test
    void contiguousSplitsExpertsIntoRanges() {
        ExpertPlacement p = ExpertPlacement.create(LAYERS, 8, List.of("a", "b", "c"), ExpertPlacement.Policy.CONTIGUOUS, 1);
        assertThat(p.expertsOn(0, 1)).containsExactly(0, 1, 2);
        assertThat(p.expertsOn(1, 1)).containsExactly(3, 4, 5);
        assertThat(p.expertsOn(2, 1)).containsExactly(6, 7);
        assertThat(p.expertsOn(0, 0)).isEmpty();
        assertThat(p.localIndex(1, 2, 4)).isEqualTo(1);
        assertThat(p.localIndex(1, 2, 0)).isEqualTo(ExpertPlacement.NOT_HERE);
        assertThat(p.describe()).anyMatch(l -> l.contains("worker 2 (c): 4 experts") && l.contains("layers 1-2: 6-7"));
    }

    @Test
    void roundRobinDealsExperts() {
        ExpertPlacement p = ExpertPlacement.create(LAYERS, 8, List.of("a", "b"), ExpertPlacement.Policy.ROUND_ROBIN, 7);
        assertThat(p.expertsOn(1, 2)).containsExactly(1, 3, 5, 7);
        assertThat(p.epoch()).isEqualTo(7);
        assertThat(ExpertPlacement.ranges(p.expertsOn(0, 1))).isEqualTo("0,2,4,6");
    }

    @Test
    void everyExpertHasExactlyOnePrimaryAndSharesAreBalanced() {
        for (var policy : new ExpertPlacement.Policy[] {ExpertPlacement.Policy.CONTIGUOUS, ExpertPlacement.Policy.ROUND_ROBIN}) {
            for (int w = 1; w <= 6; w++) {
                List<String> workers = IntStream.range(0, w).mapToObj(i -> "w" + i).toList();
                ExpertPlacement p = ExpertPlacement.create(LAYERS, 16, workers, policy, 0);
                int total = 0;
                for (int i = 0; i < w; i++) {
                    total += p.expertCountOn(i);
                    assertThat(p.expertCountOn(i)).isBetween(2 * (16 / w), 2 * ((16 + w - 1) / w));
                }
                assertThat(total).isEqualTo(32);
                for (int e = 0; e < 16; e++) {
                    assertThat(p.holds(p.primary(1, e), 1, e)).isTrue();
                }
            }
        }
    }

    @Test
    void replicatedPlacesEveryExpertOnEveryWorkerAndDispatchSpreadsATokensExperts() {
        ExpertPlacement p = ExpertPlacement.create(LAYERS, 8, List.of("a", "b"), ExpertPlacement.Policy.REPLICATED, 0);
        assertThat(p.expertsOn(0, 1)).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        assertThat(p.expertsOn(1, 2)).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        assertThat(p.replicaCount(1, 3)).isEqualTo(2);
        assertThat(p.primary(1, 3)).isEqualTo(1);
        // both experts of every token have primary 1 (odd ids), yet each worker gets one of them
        RoutingResult r = new RoutingResult(3, 2, new int[] {3, 5, 7, 1, 5, 3}, new float[] {.5f, .5f, .5f, .5f, .5f, .5f});
        float[] x = new float[3 * 4];
        DispatchPlan plan = DispatchPlan.split(1, x, 4, r, p);
        assertThat(plan.request(0).pairs()).isEqualTo(3);
        assertThat(plan.request(1).pairs()).isEqualTo(3);
    }

    @Test
    void refusesBadInput() {
        assertThatThrownBy(() -> ExpertPlacement.create(LAYERS, 8, List.of(), ExpertPlacement.Policy.CONTIGUOUS, 0))
                .hasMessageContaining("at least one worker");
        assertThatThrownBy(() -> ExpertPlacement.create(LAYERS, 8, List.of("a", "a"), ExpertPlacement.Policy.CONTIGUOUS, 0))
                .hasMessageContaining("duplicate");
    }
}
