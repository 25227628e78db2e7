package io.epserve.sim;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Calibration recovers the figures that made synthetic "measurements", and then predicts them exactly. */
class CalibrationTest {

    static Scenario scenario(CostModel cost, double message, int workers, int batch, boolean overlap, double latency) {
        return scenario(cost, message, 0, workers, batch, overlap, latency);
    }

    static Scenario scenario(CostModel cost, double message, double perByte, int workers, int batch, boolean overlap, double latency) {
        ModelShape m = SimulatorTest.model(8, 2);
        Cluster c = new Cluster(workers, workers == 0 ? 1 : workers + 1, 1, batch, overlap, 2, 1, new Cpu.OneMachine(2),
                workers == 0 ? HostLayout.COLOCATED : HostLayout.FRONTEND_HOST);
        ExpertPopularity pop = ExpertPopularity.uniform(m.layers(), m.experts());
        return new Scenario(m, cost, new Network(latency, 1e9, message, perByte, 0, 4), c, pop,
                workers == 0 ? null : SimulatorTest.CONTIGUOUS.place(m, workers, pop), Scenario.Routing.SAMPLED, 6, 2,
                Scenario.Workload.DECODE);
    }

    @Test
    void fitsFrontendOverheadsAndMessageCostThenPredictsTheRest() {
        CostModel truth = SimulatorTest.cost(0.4e-3, 0.05e-3);
        double message = 0.3e-3;
        CostModel start = SimulatorTest.cost(0, 0);
        List<Calibration.Point> points = new ArrayList<>();
        Object[][] configs = {
                {"single, batch 1", Calibration.Use.FIT_FRONTEND, 0, 1, false, 0.0},
                {"single, batch 16", Calibration.Use.FIT_FRONTEND, 0, 16, false, 0.0},
                {"1 worker", Calibration.Use.FIT_MESSAGE, 1, 16, false, 0.0},
                {"2 workers", Calibration.Use.PREDICT, 2, 16, false, 0.0},
                {"4 workers, overlap", Calibration.Use.PREDICT, 4, 16, true, 0.0},
                {"2 hosts at 500 µs", Calibration.Use.PREDICT, 2, 16, false, 500e-6}};
        for (Object[] c : configs) {
            Scenario real = scenario(truth, message, (int) c[2], (int) c[3], (boolean) c[4], (double) c[5]);
            double measured = Simulator.run(real).tokensPerSecond();
            points.add(new Calibration.Point((String) c[0], (Calibration.Use) c[1], scenario(start, 0, (int) c[2], (int) c[3], (boolean) c[4],
                    (double) c[5]), measured));
        }
        Calibration.Result r = Calibration.run(points, start);
        assertThat(r.cost().frontendLayerSeconds()).isCloseTo(0.4e-3, within(1e-9));
        assertThat(r.cost().frontendTokenSeconds()).isCloseTo(0.05e-3, within(1e-10));
        assertThat(r.messageSeconds()).isCloseTo(message, within(1e-9));
        for (Calibration.Row row : r.rows()) {
            assertThat(row.error()).as(row.point().name()).isCloseTo(0, within(1e-6));
        }
        assertThat(r.accepted()).isTrue();
    }

    @Test
    void twoMessagePointsFitTheCostPerByteToo() {
        CostModel truth = SimulatorTest.cost(0.4e-3, 0.05e-3);
        double message = 0.2e-3;
        double perByte = 20e-9;
        CostModel start = SimulatorTest.cost(0, 0);
        List<Calibration.Point> points = new ArrayList<>();
        Object[][] configs = {
                {"single, batch 1", Calibration.Use.FIT_FRONTEND, 0, 1, false},
                {"single, batch 16", Calibration.Use.FIT_FRONTEND, 0, 16, false},
                {"2 workers, batch 1", Calibration.Use.FIT_MESSAGE, 2, 1, false},
                {"2 workers, batch 16, overlap", Calibration.Use.FIT_MESSAGE, 2, 16, true},
                {"1 worker, batch 16", Calibration.Use.PREDICT, 1, 16, false},
                {"4 workers, overlap", Calibration.Use.PREDICT, 4, 16, true}};
        for (Object[] c : configs) {
            double measured = Simulator.run(scenario(truth, message, perByte, (int) c[2], (int) c[3], (boolean) c[4], 0)).tokensPerSecond();
            points.add(new Calibration.Point((String) c[0], (Calibration.Use) c[1], scenario(start, 0, (int) c[2], (int) c[3], (boolean) c[4], 0),
                    measured));
        }
        Calibration.Result r = Calibration.run(points, start);
        assertThat(r.messageSeconds()).isCloseTo(message, within(2e-6));
        assertThat(r.byteSeconds()).isCloseTo(perByte, within(0.2e-9));
        for (Calibration.Row row : r.rows()) {
            assertThat(row.error()).as(row.point().name()).isCloseTo(0, within(1e-3));
        }
    }

    @Test
    void kernelsMeasuredOnASlowerMomentAreScaledFirst() {
        // the runs were made on a machine 3× faster than the one the kernel figures came from
        CostModel truth = SimulatorTest.cost(0.4e-3, 0.05e-3);
        CostModel slowKernels = truth.slower(3, "slow").withFrontendOverheads(0, 0, "slow");
        List<Calibration.Point> points = new ArrayList<>();
        Object[][] configs = {{"s1", Calibration.Use.FIT_FRONTEND, 0, 1}, {"s16", Calibration.Use.FIT_FRONTEND, 0, 16},
                {"w1", Calibration.Use.FIT_MESSAGE, 1, 16}, {"w2", Calibration.Use.PREDICT, 2, 16}};
        for (Object[] c : configs) {
            double measured = Simulator.run(scenario(truth, 0.2e-3, (int) c[2], (int) c[3], false, 0)).tokensPerSecond();
            points.add(new Calibration.Point((String) c[0], (Calibration.Use) c[1], scenario(slowKernels, 0, (int) c[2], (int) c[3], false, 0), measured));
        }
        Calibration.Result r = Calibration.run(points, slowKernels);
        assertThat(r.cost().source()).contains("kernels scaled");
        // one factor absorbs part of the frontend's overheads into the kernels: within the acceptance, not exact
        for (Calibration.Row row : r.rows()) {
            assertThat(Math.abs(row.error())).as(row.point().name()).isLessThan(Calibration.TOLERANCE);
        }
    }

    @Test
    void aPredictionOffByMoreThanFifteenPercentIsNotAccepted() {
        CostModel c = SimulatorTest.cost(0.4e-3, 0.05e-3);
        double[] truth = truth(c);
        Calibration.Result r = Calibration.run(points(c, truth, truth[3] * 1.3), c);
        assertThat(r.rows().get(3).error()).isCloseTo(1 / 1.3 - 1, within(1e-6));
        assertThat(r.accepted()).isFalse();
    }

    @Test
    void pooledRunsAreTheMeansOfMeasuredAndPredicted() {
        CostModel c = SimulatorTest.cost(0.4e-3, 0.05e-3);
        double[] truth = truth(c);
        double two = truth[3];
        // two runs whose measurements of the predicted point sit 20% above and 5% below the truth:
        // the first alone fails the 15% test, the two together pass it
        Calibration.Result high = Calibration.run(points(c, truth, two * 1.2), c);
        Calibration.Result low = Calibration.run(points(c, truth, two * 0.95), c);
        assertThat(high.accepted()).isFalse();
        Calibration.Pooled pooled = Calibration.pool(List.of(high, low));
        assertThat(pooled.runs()).isEqualTo(2);
        Calibration.Row w2 = pooled.rows().get(3);
        assertThat(w2.point().measuredTokensPerSecond()).isCloseTo(two * 1.075, within(1e-9));
        assertThat(w2.predictedTokensPerSecond()).isCloseTo(
                (high.rows().get(3).predictedTokensPerSecond() + low.rows().get(3).predictedTokensPerSecond()) / 2, within(1e-9));
        assertThat(w2.error()).isCloseTo(1 / 1.075 - 1, within(1e-6));
        assertThat(pooled.accepted()).isTrue();
    }

    @Test
    void poolingRefusesRunsOfOtherPoints() {
        CostModel c = SimulatorTest.cost(0.4e-3, 0.05e-3);
        double[] truth = truth(c);
        Calibration.Result a = Calibration.run(points(c, truth, truth[3]), c);
        List<Calibration.Point> renamed = new ArrayList<>(points(c, truth, truth[3]));
        Calibration.Point last = renamed.removeLast();
        renamed.add(new Calibration.Point("w3", last.use(), last.scenario(), last.measuredTokensPerSecond()));
        Calibration.Result b = Calibration.run(renamed, c);
        assertThatThrownBy(() -> Calibration.pool(List.of(a, b))).hasMessageContaining("run 2 point 4 is 'w3', run 1 has 'w2'");
        assertThatThrownBy(() -> Calibration.pool(List.of())).hasMessageContaining("at least one");
    }

    /** What the cost model itself gives for single batch 1, single batch 16, 1 worker and 2 workers (batch 16), free messages. */
    private static double[] truth(CostModel c) {
        return new double[] {Simulator.run(scenario(c, 0, 0, 1, false, 0)).tokensPerSecond(),
                Simulator.run(scenario(c, 0, 0, 16, false, 0)).tokensPerSecond(),
                Simulator.run(scenario(c, 0, 1, 16, false, 0)).tokensPerSecond(),
                Simulator.run(scenario(c, 0, 2, 16, false, 0)).tokensPerSecond()};
    }

    /** The three fit points at their true figures, and the 2-worker prediction point measured as {@code two}. */
    private static List<Calibration.Point> points(CostModel c, double[] truth, double two) {
        return List.of(
                new Calibration.Point("s1", Calibration.Use.FIT_FRONTEND, scenario(c, 0, 0, 1, false, 0), truth[0]),
                new Calibration.Point("s16", Calibration.Use.FIT_FRONTEND, scenario(c, 0, 0, 16, false, 0), truth[1]),
                new Calibration.Point("w1", Calibration.Use.FIT_MESSAGE, scenario(c, 0, 1, 16, false, 0), truth[2]),
                new Calibration.Point("w2", Calibration.Use.PREDICT, scenario(c, 0, 2, 16, false, 0), two));
    }

    @Test
    void needsItsFitPoints() {
        CostModel c = SimulatorTest.cost(0, 0);
        assertThatThrownBy(() -> Calibration.run(List.of(new Calibration.Point("w", Calibration.Use.PREDICT, scenario(c, 0, 1, 4, false, 0), 10)), c))
                .hasMessageContaining("exactly two fit-frontend points");
        assertThatThrownBy(() -> Calibration.run(List.of(
                new Calibration.Point("s1", Calibration.Use.FIT_FRONTEND, scenario(c, 0, 0, 1, false, 0), 10),
                new Calibration.Point("s4", Calibration.Use.FIT_FRONTEND, scenario(c, 0, 0, 4, false, 0), 20),
                new Calibration.Point("a", Calibration.Use.FIT_MESSAGE, scenario(c, 0, 1, 4, false, 0), 10),
                new Calibration.Point("b", Calibration.Use.FIT_MESSAGE, scenario(c, 0, 2, 4, false, 0), 10)), c))
                .hasMessageContaining("different batch sizes");
    }
}
