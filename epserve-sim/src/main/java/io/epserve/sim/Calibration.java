package io.epserve.sim;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * Predicted against measured, for configurations run for real on this machine. Three kinds of
 * point: two single-process runs at different batch sizes fit the frontend's work outside its
 * weight products (per layer and per token); one run through workers fits the software cost of
 * a message; every other point is predicted with those figures and compared. A point is accepted
 * when the prediction is within {@link #TOLERANCE} of the measurement.
 */
public final class Calibration {
    /** The accepted relative error of a prediction. */
    public static final double TOLERANCE = 0.15;

    /** What a measured point is used for. */
    public enum Use { FIT_FRONTEND, FIT_MESSAGE, PREDICT }

    /**
     * One configuration measured for real.
     *
     * @param name                 what was measured (printed)
     * @param use                  fit or predict
     * @param scenario             the configuration as the simulator sees it (its cost model and message cost are replaced by the fitted ones)
     * @param measuredTokensPerSecond what the run gave
     */
    public record Point(String name, Use use, Scenario scenario, double measuredTokensPerSecond) {
        public Point {
            if (!(measuredTokensPerSecond > 0)) {
                throw new IllegalArgumentException("point '" + name + "': measured tokens/s must be > 0, got " + measuredTokensPerSecond);
            }
        }
    }

    /** One line of the table. */
    public record Row(Point point, double predictedTokensPerSecond, double predictedStepSeconds) {
        public double error() {
            return predictedTokensPerSecond / point.measuredTokensPerSecond() - 1;
        }

        public boolean accepted() {
            return point.use() != Use.PREDICT || Math.abs(error()) <= TOLERANCE;
        }
    }

    /**
     * @param cost           the fitted cost model
     * @param messageSeconds the fitted software cost of one message
     * @param rows           every point, fitted ones first
     */
    public record Result(CostModel cost, double messageSeconds, List<Row> rows) {
        public boolean accepted() {
            return rows.stream().allMatch(Row::accepted);
        }
    }

    private Calibration() {}

    /** Fits on the fit points, predicts the others. */
    public static Result run(List<Point> points, CostModel cost) {
        List<Point> frontend = points.stream().filter(p -> p.use() == Use.FIT_FRONTEND).toList();
        List<Point> message = points.stream().filter(p -> p.use() == Use.FIT_MESSAGE).toList();
        if (frontend.size() != 2 || message.size() != 1) {
            throw new IllegalArgumentException("calibration needs exactly two fit-frontend points (single process, two batch sizes) and one "
                    + "fit-message point (through workers); got " + frontend.size() + " and " + message.size());
        }
        CostModel fitted = fitFrontend(frontend.get(0), frontend.get(1), cost);
        Point mp = message.getFirst();
        double msg = fitMessage(mp, fitted);
        List<Row> rows = new ArrayList<>();
        for (Point p : points) {
            SimResult r = Simulator.run(apply(p.scenario(), fitted, msg));
            rows.add(new Row(p, r.tokensPerSecond(), r.stepMean()));
        }
        return new Result(fitted, msg, rows);
    }

    private static Scenario apply(Scenario s, CostModel cost, double messageSeconds) {
        Network n = s.network();
        return new Scenario(s.model(), cost, new Network(n.latencySeconds(), n.bitsPerSecond(), messageSeconds, n.wireBytesPerValue()),
                s.cluster(), s.popularity(), s.placement(), s.routing(), s.steps(), s.seed());
    }

    /**
     * A single process runs every task in turn, so its step is the step without frontend
     * overheads plus, per layer, a + b·batch: two batch sizes give a and b (clamped at 0). When
     * a measured step is shorter than the kernels alone predict, the kernels were measured at a
     * slower moment than the runs: they are first scaled to the larger batch's measurement (its
     * step is mostly kernels), then a and b are fitted.
     */
    static CostModel fitFrontend(Point p1, Point p2, CostModel cost) {
        for (Point p : List.of(p1, p2)) {
            if (p.scenario().cluster().workers() != 0 || p.scenario().cluster().overlap()) {
                throw new IllegalArgumentException("fit-frontend point '" + p.name() + "' must be a single process (0 workers) without overlap");
            }
        }
        Point[] ps = p1.scenario().cluster().batch() <= p2.scenario().cluster().batch() ? new Point[] {p1, p2} : new Point[] {p2, p1};
        if (ps[0].scenario().cluster().batch() == ps[1].scenario().cluster().batch()) {
            throw new IllegalArgumentException("the two fit-frontend points need different batch sizes, both have "
                    + ps[0].scenario().cluster().batch());
        }
        CostModel bare = cost.withFrontendOverheads(0, 0, cost.source());
        double[] extra = extraPerLayer(ps, bare);
        String source = cost.source();
        if (extra[0] < 0 || extra[1] < 0) {
            double modelled = Simulator.run(apply(ps[1].scenario(), bare, 0)).stepMean();
            double factor = measuredStep(ps[1]) / modelled;
            source += String.format(Locale.ROOT, "; kernels scaled ×%.3f to '%s'", factor, ps[1].name());
            bare = bare.slower(factor, source);
            extra = extraPerLayer(ps, bare);
        }
        int b0 = ps[0].scenario().cluster().batch();
        int b1 = ps[1].scenario().cluster().batch();
        double b = Math.max(0, (extra[1] - extra[0]) / (b1 - b0));
        double a = Math.max(0, extra[0] - b * b0);
        return bare.withFrontendOverheads(a, b, source + String.format(Locale.ROOT,
                "; frontend overheads fitted on '%s' and '%s'", p1.name(), p2.name()));
    }

    private static double measuredStep(Point p) {
        Cluster c = p.scenario().cluster();
        return c.batch() * c.frontends() / p.measuredTokensPerSecond();
    }

    /** Per layer, measured step minus the modelled step without frontend overheads. */
    private static double[] extraPerLayer(Point[] ps, CostModel bare) {
        double[] extra = new double[ps.length];
        for (int i = 0; i < ps.length; i++) {
            double modelled = Simulator.run(apply(ps[i].scenario(), bare, 0)).stepMean();
            extra[i] = (measuredStep(ps[i]) - modelled) / ps[i].scenario().model().layers();
        }
        return extra;
    }

    /** The message cost that makes the point's prediction its measurement (bisection: more cost, fewer tokens/s). */
    static double fitMessage(Point p, CostModel cost) {
        Function<Double, Double> tps = m -> Simulator.run(apply(p.scenario(), cost, m)).tokensPerSecond();
        double lo = 0;
        double hi = 0.05;
        if (tps.apply(lo) <= p.measuredTokensPerSecond()) {
            return 0;
        }
        if (tps.apply(hi) >= p.measuredTokensPerSecond()) {
            return hi;
        }
        for (int i = 0; i < 40; i++) {
            double mid = (lo + hi) / 2;
            if (tps.apply(mid) > p.measuredTokensPerSecond()) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return (lo + hi) / 2;
    }
}
