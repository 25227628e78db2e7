package io.epserve.sim;

import io.epserve.moe.ExpertPlacement;
import java.util.List;
import java.util.Locale;
import java.util.stream.IntStream;

/**
 * The placement policy a simulation uses, built for any worker count the way the dispatcher
 * builds it, so that the simulator places experts exactly as a real run does.
 *
 * @param policy         which policy
 * @param redundantSlots extra expert replicas per worker (balanced only)
 */
public record PlacementChoice(Policy policy, int redundantSlots) {

    /** The policies the simulator knows: those of {@link ExpertPlacement.Policy}, and balanced. */
    public enum Policy { CONTIGUOUS, ROUND_ROBIN, REPLICATED, BALANCED }

    public PlacementChoice {
        if (redundantSlots < 0) {
            throw new IllegalArgumentException("redundant slots must be >= 0, got " + redundantSlots);
        }
        if (redundantSlots > 0 && policy != Policy.BALANCED) {
            throw new IllegalArgumentException("redundant slots apply to the balanced policy only, not " + policy.name().toLowerCase(Locale.ROOT));
        }
    }

    public static PlacementChoice parse(String policy, int redundantSlots) {
        String p = policy.trim().toUpperCase(Locale.ROOT).replace('-', '_');
        for (Policy v : Policy.values()) {
            if (v.name().equals(p)) {
                return new PlacementChoice(v, redundantSlots);
            }
        }
        throw new IllegalArgumentException("unknown placement policy '" + policy + "' (use contiguous, round_robin, replicated or balanced)");
    }

    /** The placement over {@code workers} workers for the model, using the load where the policy reads one. */
    public ExpertPlacement place(ModelShape m, int workers, ExpertPopularity load) {
        List<String> names = IntStream.range(0, workers).mapToObj(i -> "sim-" + i).toList();
        return switch (policy) {
            case CONTIGUOUS -> ExpertPlacement.create(m.sparse(), m.experts(), names, ExpertPlacement.Policy.CONTIGUOUS, 0);
            case ROUND_ROBIN -> ExpertPlacement.create(m.sparse(), m.experts(), names, ExpertPlacement.Policy.ROUND_ROBIN, 0);
            case REPLICATED -> ExpertPlacement.create(m.sparse(), m.experts(), names, ExpertPlacement.Policy.REPLICATED, 0);
            case BALANCED -> BalancedPlacementAdapter.place(m, names, load, redundantSlots);
        };
    }

    @Override
    public String toString() {
        String name = policy.name().toLowerCase(Locale.ROOT);
        return policy == Policy.BALANCED ? name + " (" + redundantSlots + " redundant slots per worker)" : name;
    }
}
