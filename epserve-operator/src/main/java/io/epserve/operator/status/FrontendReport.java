package io.epserve.operator.status;

import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * What the frontends said, summed or reduced over every ready frontend pod: the placement epoch they serve (the
 * lowest, as a frontend mid-switch still serves the old one), the worst layer's balancedness, how many workers
 * they see serving (the fewest), and their routed-token counters summed (for the autoscaler's rate).
 */
public record FrontendReport(Source source, OptionalLong placementEpoch, OptionalDouble balancedness,
        OptionalInt workersServing, OptionalDouble routedTokens) {

    public enum Source {
        /** {@code /v1/epserve/placement} and {@code /v1/epserve/workers} answered. */
        PLACEMENT_API("placement-api"),
        /** Only {@code /metrics} answered (a frontend without the placement endpoints). */
        METRICS("metrics"),
        /** No ready frontend answered. */
        UNREACHABLE("unreachable");

        private final String label;

        Source(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    public static FrontendReport unreachable() {
        return new FrontendReport(Source.UNREACHABLE, OptionalLong.empty(), OptionalDouble.empty(), OptionalInt.empty(),
                OptionalDouble.empty());
    }

    public Optional<Double> routedTokensValue() {
        return routedTokens.isPresent() ? Optional.of(routedTokens.getAsDouble()) : Optional.empty();
    }
}
