package io.epserve.operator;

import java.time.Duration;
import java.time.Instant;
import java.util.Optional;

/**
 * The worker autoscaler as a pure function: previous decision, two samples of the frontends' routed-token
 * counter and the clock in, a worker count and its reason out. Like the Horizontal Pod Autoscaler it ignores
 * deviations within {@link #TOLERANCE} of the target, and it never changes the count twice within the cooldown
 * (moving experts to new workers costs a re-placement, so flapping is worse than a short overload).
 */
public final class WorkerScaler {
    /** Relative deviation from the target per-worker rate that is not acted on. */
    public static final double TOLERANCE = 0.1;
    /**
     * Shortest span a rate is taken over. Reconciliations also follow events (a pod became ready), which can come
     * milliseconds apart; a rate over such a span is noise.
     */
    public static final Duration MIN_WINDOW = Duration.ofSeconds(15);

    private WorkerScaler() {
    }

    /** A reading of the cumulative routed-token counter (summed over frontends, layers and experts). */
    public record LoadSample(double routedTokens, Instant at) {
    }

    public enum Reason {
        /** The previous count lay outside [min, max] (a spec change): moved to the nearest bound at once. */
        CLAMPED,
        /** No autoscaling target: the count stays where the spec puts it. */
        NO_TARGET,
        /** No usable pair of samples (first look, counter reset, frontend unreachable, window too short): hold. */
        NO_RATE,
        /** The rate is within the tolerance of what the current count should carry. */
        STEADY,
        /** A change is due but the last one was within the cooldown. */
        COOLDOWN,
        SCALED_UP,
        SCALED_DOWN
    }

    public record Decision(int workers, Reason reason, double tokensPerSecond) {
        /** The load changed the count (not a spec change): this starts a cooldown. */
        public boolean autoscaled() {
            return reason == Reason.SCALED_UP || reason == Reason.SCALED_DOWN;
        }
    }

    /**
     * @param current workers asked for last time (the first time: the policy's minimum)
     * @param lastScale when autoscaling last changed the count, if ever
     */
    public static Decision decide(ScalingPolicy policy, int current, Optional<LoadSample> previous,
            Optional<LoadSample> latest, Optional<Instant> lastScale, Instant now) {
        if (current < policy.min() || current > policy.max()) {
            return new Decision(Math.clamp(current, policy.min(), policy.max()), Reason.CLAMPED, Double.NaN);
        }
        if (policy.targetTokensPerWorkerSecond().isEmpty()) {
            return new Decision(current, Reason.NO_TARGET, Double.NaN);
        }
        if (previous.isEmpty() || latest.isEmpty()) {
            return new Decision(current, Reason.NO_RATE, Double.NaN);
        }
        double seconds = Duration.between(previous.get().at(), latest.get().at()).toMillis() / 1000.0;
        double delta = latest.get().routedTokens() - previous.get().routedTokens();
        if (seconds < MIN_WINDOW.toMillis() / 1000.0 || delta < 0) {
            return new Decision(current, Reason.NO_RATE, Double.NaN);
        }
        double rate = delta / seconds;
        double target = policy.targetTokensPerWorkerSecond().getAsDouble();
        double perWorker = rate / current;
        if (Math.abs(perWorker / target - 1) <= TOLERANCE) {
            return new Decision(current, Reason.STEADY, rate);
        }
        int wanted = Math.clamp((long) Math.ceil(rate / target), policy.min(), policy.max());
        if (wanted == current) {
            return new Decision(current, Reason.STEADY, rate);
        }
        if (lastScale.isPresent() && now.isBefore(lastScale.get().plus(policy.cooldown()))) {
            return new Decision(current, Reason.COOLDOWN, rate);
        }
        return new Decision(wanted, wanted > current ? Reason.SCALED_UP : Reason.SCALED_DOWN, rate);
    }

    /**
     * The sample to remember for the next rate: the latest, unless the remembered one is younger than
     * {@link #MIN_WINDOW} (then it stays, so the next rate spans at least the window). A counter that went down
     * (a frontend restarted) starts over from the latest.
     */
    public static Optional<LoadSample> remember(Optional<LoadSample> previous, Optional<LoadSample> latest) {
        if (latest.isEmpty()) {
            return previous;
        }
        if (previous.isEmpty() || latest.get().routedTokens() < previous.get().routedTokens()) {
            return latest;
        }
        boolean windowFull = !latest.get().at().isBefore(previous.get().at().plus(MIN_WINDOW));
        return windowFull ? latest : previous;
    }
}
