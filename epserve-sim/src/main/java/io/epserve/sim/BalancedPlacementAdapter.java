package io.epserve.sim;

import io.epserve.moe.ExpertPlacement;
import java.util.List;

/**
 * Hands the simulator's load to epserve-moe's load-balanced placement policy. The simulator has
 * no balancing algorithm of its own: it must place experts exactly as the dispatcher would.
 */
final class BalancedPlacementAdapter {
    private BalancedPlacementAdapter() {}

    static ExpertPlacement place(ModelShape m, List<String> workers, ExpertPopularity load, int redundantSlots) {
        throw new IllegalArgumentException("the balanced placement policy is not in epserve-moe on this build; use contiguous, round_robin "
                + "or replicated");
    }
}
