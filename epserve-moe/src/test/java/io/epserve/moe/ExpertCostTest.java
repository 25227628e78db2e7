package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ExpertCostTest {
    @Test
    void aReplicaCostsItsPairsPlusTheFixedPartOfTheStepsItRuns() {
        ExpertCost c = new ExpertCost(3);
        // a hot replica (100 pairs a step) runs every step: pairs + fixed per step
        assertThat(c.replica(1000, 10)).isCloseTo(1000 + 3 * 10, within(1e-9));
        // a cold one (one pair in 100 steps) runs in about 1 step of them
        assertThat(c.replica(1, 100)).isCloseTo(1 + 3 * 100 * (1 - Math.exp(-0.01)), within(1e-12));
        assertThat(c.replica(0, 10)).isZero();
        // pairs alone, or without a step count to set the fixed part against
        assertThat(ExpertCost.PAIRS.replica(7, 10)).isEqualTo(7);
        assertThat(c.replica(7, 0)).isEqualTo(7);
        assertThat(ExpertCost.PAIRS.pairsOnly()).isTrue();
        assertThat(c.pairsOnly()).isFalse();
    }

    @Test
    void fromSecondsTheFixedPartIsInPairs() {
        assertThat(ExpertCost.of(0.6e-3, 0.3e-3).fixedPairs()).isCloseTo(2.0, within(1e-12));
    }

    @Test
    void aFitRecoversTheTermsOfMeasuredSteps() {
        SplittableRandom r = new SplittableRandom(4);
        int n = 40;
        double[] experts = new double[n];
        double[] pairs = new double[n];
        double[] seconds = new double[n];
        for (int i = 0; i < n; i++) {
            experts[i] = 1 + r.nextInt(32);
            pairs[i] = experts[i] + r.nextInt(500);
            seconds[i] = 0.002 + 0.0007 * experts[i] + 0.0003 * pairs[i] + (r.nextDouble() - 0.5) * 1e-6;
        }
        ExpertCost.Fit f = ExpertCost.fit(experts, pairs, seconds);
        assertThat(f.baseSeconds()).isCloseTo(0.002, within(1e-5));
        assertThat(f.fixedSeconds()).isCloseTo(0.0007, within(1e-6));
        assertThat(f.secondsPerPair()).isCloseTo(0.0003, within(1e-7));
        assertThat(f.cost().fixedPairs()).isCloseTo(0.0007 / 0.0003, within(0.01));
        // a negative fixed part (noise) counts as none
        assertThat(new ExpertCost.Fit(0, -1e-4, 1e-3).cost()).isEqualTo(ExpertCost.PAIRS);
    }

    @Test
    void aFixedPartThatFitsBelowZeroIsFittedAsNone() {
        // steps that get faster with more experts run at the same pairs: the unconstrained fit's
        // fixed part is negative; the constrained fit is the least-squares line through pairs alone
        double[] experts = {1, 2, 3, 4, 1, 2, 3, 4};
        double[] pairs = {10, 10, 10, 10, 20, 20, 20, 20};
        double[] seconds = {1.04, 1.03, 1.02, 1.01, 2.04, 2.03, 2.02, 2.01};
        ExpertCost.Fit f = ExpertCost.fit(experts, pairs, seconds);
        assertThat(f.fixedSeconds()).isZero();
        assertThat(f.secondsPerPair()).isCloseTo(0.1, within(1e-12));
        assertThat(f.baseSeconds()).isCloseTo(0.025, within(1e-12));
    }

    @Test
    void samplesThatCannotSeparateTheTermsAreRefused() {
        double[] experts = {4, 4, 4, 4};
        double[] pairs = {10, 20, 30, 40};
        assertThatThrownBy(() -> ExpertCost.fit(experts, pairs, new double[] {1, 2, 3, 4})).hasMessageContaining("vary independently");
        assertThat(ExpertCost.fit(new double[] {1, 2, 3, 5}, new double[] {9, 2, 7, 1}, new double[] {9, 2, 7, 1}).secondsPerPair())
                .isCloseTo(1, within(1e-9));
        assertThatThrownBy(() -> ExpertCost.fit(new double[] {1, 2, 3, 5}, new double[] {10, 20, 30, 40}, new double[] {4, 3, 2, 1}))
                .hasMessageContaining("not positive");
        assertThatThrownBy(() -> ExpertCost.fit(new double[] {1}, new double[] {1, 2}, new double[] {1})).hasMessageContaining("as many");
    }

    @Test
    void badFiguresAreRefused() {
        assertThatThrownBy(() -> new ExpertCost(-1)).hasMessageContaining("fixed cost");
        assertThatThrownBy(() -> new ExpertCost(Double.NaN)).hasMessageContaining("fixed cost");
        assertThatThrownBy(() -> new ExpertCost(Double.POSITIVE_INFINITY)).hasMessageContaining("fixed cost");
        assertThatThrownBy(() -> ExpertCost.of(1e-3, 0)).hasMessageContaining("per token");
        assertThatThrownBy(() -> ExpertCost.of(-1e-3, 1e-3)).hasMessageContaining("fixed time");
        assertThatThrownBy(() -> ExpertLoad.of(2, new long[][] {{1, 1}}, -1)).hasMessageContaining("steps");
    }
}
