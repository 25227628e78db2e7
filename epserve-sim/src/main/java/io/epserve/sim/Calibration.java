package io.epserve.sim;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.function.Function;

/**
 * Predicted against measured, for configurations run for real on this machine. Three kinds of
 * point: two single-process runs at different batch sizes fit the frontend's work outside its
 * weight products (per layer and per token); one or two runs through workers fit the core time a
 * message's software takes at each end — with one, per message; with two at different batch
 * sizes, per message and per byte (the small batch's messages are nearly all fixed cost, the
 * large batch's mostly bytes); every other point is predicted with those figures and compared. A
 * point is accepted when the prediction is within {@link #TOLERANCE} of the measurement. The
 * hand-off's wall time is not fitted: it stays at the points' own (0 from a points file).
 */
public final class Calibration {
    /** The accepted relative error of a prediction. */
    public static final double TOLERANCE = 0.15;

    /** The largest per-message cost a fit considers. */
    private static final double MAX_MESSAGE_SECONDS = 0.05;

    /** The largest per-byte cost a fit considers (1 µs a byte: 1 MB/s). */
    private static final double MAX_BYTE_SECONDS = 1e-6;

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
     * @param messageSeconds the fitted software cost of one message at each end (seconds of one core)
     * @param byteSeconds    the fitted software cost per byte of a message at each end (0 unless two fit-message points)
     * @param rows           every point, in the order given
     */
    public record Result(CostModel cost, double messageSeconds, double byteSeconds, List<Row> rows) {
        public boolean accepted() {
            return rows.stream().allMatch(Row::accepted);
        }
    }

    /**
     * Several calibration runs of the same configurations taken together: per configuration the
     * mean of the runs' measurements and the mean of their predictions (each run fitted on its own
     * fit points and kernel probe, so a run measured while the machine was slower predicts slower
     * too). On a machine whose repeats of one configuration spread by about the tolerance itself,
     * one run cannot settle a 15% test; the mean of independent runs can.
     *
     * @param runs the runs pooled
     * @param rows one per configuration, in the first run's order: measured and predicted are the means
     */
    public record Pooled(int runs, List<Row> rows) {
        public boolean accepted() {
            return rows.stream().allMatch(Row::accepted);
        }
    }

    private Calibration() {}

    /** Pools runs of the same points (same names, same uses, same order). */
    public static Pooled pool(List<Result> runs) {
        if (runs.isEmpty()) {
            throw new IllegalArgumentException("pooling needs at least one calibration run");
        }
        List<Row> first = runs.getFirst().rows();
        List<Row> pooled = new ArrayList<>();
        for (int i = 0; i < first.size(); i++) {
            Point p = first.get(i).point();
            double measured = 0;
            double predicted = 0;
            double step = 0;
            for (int r = 0; r < runs.size(); r++) {
                List<Row> rows = runs.get(r).rows();
                if (rows.size() != first.size()) {
                    throw new IllegalArgumentException("run " + (r + 1) + " has " + rows.size() + " points, run 1 has " + first.size());
                }
                Row row = rows.get(i);
                if (!row.point().name().equals(p.name()) || row.point().use() != p.use()) {
                    throw new IllegalArgumentException("run " + (r + 1) + " point " + (i + 1) + " is '" + row.point().name()
                            + "', run 1 has '" + p.name() + "' there: runs pool only the same points in the same order");
                }
                measured += row.point().measuredTokensPerSecond();
                predicted += row.predictedTokensPerSecond();
                step += row.predictedStepSeconds();
            }
            int n = runs.size();
            pooled.add(new Row(new Point(p.name(), p.use(), p.scenario(), measured / n), predicted / n, step / n));
        }
        return new Pooled(runs.size(), pooled);
    }

    /** Fits on the fit points, predicts the others. */
    public static Result run(List<Point> points, CostModel cost) {
        List<Point> frontend = points.stream().filter(p -> p.use() == Use.FIT_FRONTEND).toList();
        List<Point> message = points.stream().filter(p -> p.use() == Use.FIT_MESSAGE).toList();
        if (frontend.size() != 2 || message.isEmpty() || message.size() > 2) {
            throw new IllegalArgumentException("calibration needs exactly two fit-frontend points (single process, two batch sizes) and one "
                    + "or two fit-message points (through workers); got " + frontend.size() + " and " + message.size());
        }
        CostModel fitted = fitFrontend(frontend.get(0), frontend.get(1), cost);
        double[] msg = message.size() == 1 ? new double[] {fitMessage(message.getFirst(), fitted, 0), 0}
                : fitMessageAndBytes(message.get(0), message.get(1), fitted);
        List<Row> rows = new ArrayList<>();
        for (Point p : points) {
            SimResult r = Simulator.run(apply(p.scenario(), fitted, msg[0], msg[1]));
            rows.add(new Row(p, r.tokensPerSecond(), r.stepMean()));
        }
        return new Result(fitted, msg[0], msg[1], rows);
    }

    private static Scenario apply(Scenario s, CostModel cost, double messageSeconds, double byteSeconds) {
        Network n = s.network();
        return new Scenario(s.model(), cost, n.withMessageCosts(messageSeconds, byteSeconds, n.handoffSeconds()), s.cluster(), s.popularity(),
                s.placement(), s.routing(), s.steps(), s.seed(), s.workload());
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
            double modelled = Simulator.run(apply(ps[1].scenario(), bare, 0, 0)).stepMean();
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
            double modelled = Simulator.run(apply(ps[i].scenario(), bare, 0, 0)).stepMean();
            extra[i] = (measuredStep(ps[i]) - modelled) / ps[i].scenario().model().layers();
        }
        return extra;
    }

    /**
     * The per-message core time that makes the point's prediction its measurement, with the
     * given cost per byte (bisection: more cost, fewer tokens/s); 0 when even a free message is
     * too slow, the search's ceiling when even that is too fast.
     */
    static double fitMessage(Point p, CostModel cost, double byteSeconds) {
        return bisect(m -> Simulator.run(apply(p.scenario(), cost, m, byteSeconds)).tokensPerSecond(), p.measuredTokensPerSecond(),
                MAX_MESSAGE_SECONDS);
    }

    /**
     * Core time per message and per byte that make both points' predictions their measurements:
     * for each candidate cost per byte, the cost per message that fits the point with the smaller
     * batch (small messages); then the cost per byte at which the other point fits too
     * (bisection on the sign of its error).
     */
    static double[] fitMessageAndBytes(Point a, Point b, CostModel cost) {
        if (a.scenario().cluster().batch() == b.scenario().cluster().batch()) {
            throw new IllegalArgumentException("the two fit-message points need different batch sizes (small and large messages), both have "
                    + a.scenario().cluster().batch());
        }
        Point small = a.scenario().cluster().batch() < b.scenario().cluster().batch() ? a : b;
        Point large = small == a ? b : a;
        Function<Double, Double> error = perByte -> Simulator.run(apply(large.scenario(), cost, fitMessage(small, cost, perByte), perByte))
                .tokensPerSecond() - large.measuredTokensPerSecond();
        double lo = 0;
        double hi = MAX_BYTE_SECONDS;
        double atLo = error.apply(lo);
        double atHi = error.apply(hi);
        double perByte;
        if (Math.signum(atLo) == Math.signum(atHi)) {
            // no cost per byte fits both: the end with the smaller error
            perByte = Math.abs(atLo) <= Math.abs(atHi) ? lo : hi;
        } else {
            for (int i = 0; i < 30; i++) {
                double mid = (lo + hi) / 2;
                if (Math.signum(error.apply(mid)) == Math.signum(atLo)) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            perByte = (lo + hi) / 2;
        }
        return new double[] {fitMessage(small, cost, perByte), perByte};
    }

    /** The x in [0, max] where the decreasing tokensPerSecond(x) meets {@code measured}, or the end of the range it cannot reach. */
    private static double bisect(Function<Double, Double> tokensPerSecond, double measured, double max) {
        double lo = 0;
        double hi = max;
        if (tokensPerSecond.apply(lo) <= measured) {
            return 0;
        }
        if (tokensPerSecond.apply(hi) >= measured) {
            return hi;
        }
        for (int i = 0; i < 30; i++) {
            double mid = (lo + hi) / 2;
            if (tokensPerSecond.apply(mid) > measured) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return (lo + hi) / 2;
    }
}
