package io.epserve.moe;

import java.util.Locale;

/**
 * What a worker's share of one layer's step costs, in units of the compute of one (token,
 * expert) pair: every expert the worker runs in the step costs {@code fixedPairs} (streaming the
 * expert's weights from memory and setting it up, whatever its token count), every pair one more.
 * A worker's time is not proportional to its pairs alone: on this project's BF16 kernels an
 * expert costs about as much as two to three of its tokens before it has done any (the roofline
 * {@code bytes / bandwidth} against {@code 2 · params / flop rate}), so two workers with equal
 * pairs but unequal expert counts do not finish together, and every extra replica of a hot expert
 * costs its worker one fixed part more. {@link BalancedPlacement} packs this cost, and the
 * dispatcher splits a replicated expert's tokens by it.
 *
 * @param fixedPairs the fixed cost of running one expert in a step, in pairs (0: pairs alone)
 */
public record ExpertCost(double fixedPairs) {
    /** Pairs alone: the cost model that ignores the per-expert part. */
    public static final ExpertCost PAIRS = new ExpertCost(0);

    public ExpertCost {
        if (!(fixedPairs >= 0) || Double.isInfinite(fixedPairs)) {
            throw new IllegalArgumentException("the fixed cost of running an expert must be a finite number of pairs >= 0, got "
                    + fixedPairs);
        }
    }

    /**
     * From a kernel's time per expert call, {@code fixedSeconds + secondsPerPair · tokens} (the
     * least-squares line of a measurement such as {@code epserve simulate --fit-cost}).
     */
    public static ExpertCost of(double fixedSeconds, double secondsPerPair) {
        if (!(fixedSeconds >= 0) || Double.isInfinite(fixedSeconds)) {
            throw new IllegalArgumentException("an expert's fixed time must be finite and >= 0 seconds, got " + fixedSeconds);
        }
        if (!(secondsPerPair > 0) || Double.isInfinite(secondsPerPair)) {
            throw new IllegalArgumentException("an expert's time per token must be finite and > 0 seconds, got " + secondsPerPair);
        }
        return new ExpertCost(fixedSeconds / secondsPerPair);
    }

    /**
     * The expected cost, over {@code steps} steps, of one replica that computes {@code tokens}
     * pairs in them: the pairs, plus the fixed part for every step in which it gets at least one
     * pair. Tokens arrive independently, so a replica with λ = tokens / steps pairs per step runs
     * in a fraction {@code 1 − e^−λ} of the steps (Poisson): a hot expert every step, a cold one
     * rarely. With an unknown step count ({@code steps <= 0}) the fixed part cannot be set against
     * the counts, and the cost is the pairs alone.
     */
    public double replica(double tokens, long steps) {
        if (tokens <= 0) {
            return 0;
        }
        if (fixedPairs == 0 || steps <= 0) {
            return tokens;
        }
        return tokens - fixedPairs * steps * Math.expm1(-tokens / steps);
    }

    /**
     * A least-squares fit of measured worker steps: {@code seconds = base + fixed · experts +
     * perPair · pairs}, where a sample is one worker's share of one step (how many experts it
     * ran, how many pairs, how long its compute took). {@code base} is what every request costs
     * whatever it holds; it is the same for every worker a step reaches, so it does not enter
     * the cost that placement balances.
     *
     * @param baseSeconds    per request
     * @param fixedSeconds   per expert run
     * @param secondsPerPair per (token, expert) pair
     */
    public record Fit(double baseSeconds, double fixedSeconds, double secondsPerPair) {
        /** The cost model of this fit; a negative fixed part (noise) counts as none. */
        public ExpertCost cost() {
            return of(Math.max(0, fixedSeconds), secondsPerPair);
        }
    }

    /**
     * Fits {@link Fit} to samples {@code (experts[i], pairs[i]) -> seconds[i]}; throws when the
     * samples cannot separate the three terms (fewer than three, or experts and pairs varying
     * together) or the time per pair comes out non-positive.
     */
    public static Fit fit(double[] experts, double[] pairs, double[] seconds) {
        int n = seconds.length;
        if (experts.length != n || pairs.length != n) {
            throw new IllegalArgumentException("a cost fit needs as many expert counts and pair counts as times: " + experts.length
                    + ", " + pairs.length + ", " + n);
        }
        // normal equations of [1, experts, pairs] · (base, fixed, perPair) = seconds
        double[][] a = new double[3][4];
        for (int i = 0; i < n; i++) {
            double[] row = {1, experts[i], pairs[i]};
            for (int r = 0; r < 3; r++) {
                for (int c = 0; c < 3; c++) {
                    a[r][c] += row[r] * row[c];
                }
                a[r][3] += row[r] * seconds[i];
            }
        }
        double[] x = solve(a);
        if (x == null) {
            throw new IllegalArgumentException("a cost fit needs samples whose expert counts and pair counts vary independently; got "
                    + n + " samples that do not");
        }
        if (x[1] < 0) {
            // A run cannot cost less than nothing: the best fit with a fixed part of at least zero
            // then lies on that bound, i.e. the least-squares fit of base and per-pair alone.
            x = fitWithoutFixedPart(pairs, seconds);
        }
        if (!(x[2] > 0)) {
            throw new IllegalArgumentException(String.format(Locale.ROOT,
                    "the fitted time per pair is %.3g s, not positive: the samples are too noisy to fit", x[2]));
        }
        return new Fit(x[0], x[1], x[2]);
    }

    /** {@code seconds = base + perPair · pairs} by least squares, as {base, 0, perPair}. */
    private static double[] fitWithoutFixedPart(double[] pairs, double[] seconds) {
        int n = seconds.length;
        double mp = 0;
        double ms = 0;
        for (int i = 0; i < n; i++) {
            mp += pairs[i] / n;
            ms += seconds[i] / n;
        }
        double cov = 0;
        double var = 0;
        for (int i = 0; i < n; i++) {
            cov += (pairs[i] - mp) * (seconds[i] - ms);
            var += (pairs[i] - mp) * (pairs[i] - mp);
        }
        double perPair = cov / var;
        return new double[] {ms - perPair * mp, 0, perPair};
    }

    /** Gaussian elimination with partial pivoting of a 3×3 system [A | b]; null when singular. */
    private static double[] solve(double[][] a) {
        int n = 3;
        double scale = 0;
        for (double[] row : a) {
            for (int c = 0; c < n; c++) {
                scale = Math.max(scale, Math.abs(row[c]));
            }
        }
        for (int col = 0; col < n; col++) {
            int pivot = col;
            for (int r = col + 1; r < n; r++) {
                if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) {
                    pivot = r;
                }
            }
            if (Math.abs(a[pivot][col]) <= scale * 1e-12) {
                return null;
            }
            double[] t = a[col];
            a[col] = a[pivot];
            a[pivot] = t;
            for (int r = col + 1; r < n; r++) {
                double f = a[r][col] / a[col][col];
                for (int c = col; c <= n; c++) {
                    a[r][c] -= f * a[col][c];
                }
            }
        }
        double[] x = new double[n];
        for (int r = n - 1; r >= 0; r--) {
            double s = a[r][n];
            for (int c = r + 1; c < n; c++) {
                s -= a[r][c] * x[c];
            }
            x[r] = s / a[r][r];
        }
        return x;
    }

    /** Whether the fixed part is zero: the cost of a worker is its pairs. */
    public boolean pairsOnly() {
        return fixedPairs == 0;
    }
}
