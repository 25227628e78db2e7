package io.epserve.sim;

import io.epserve.moe.BalancedPlacement;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import java.util.List;

/**
 * Hands the simulator's load to epserve-moe's load-balanced placement policy. The simulator has
 * no balancing algorithm of its own: it must place experts exactly as the dispatcher would.
 */
final class BalancedPlacementAdapter {
    private BalancedPlacementAdapter() {}

    /** Shares become token counts at a fixed scale (the policy balances ratios, so the scale does not matter). */
    private static final double SCALE = 1e9;

    static ExpertPlacement place(ModelShape m, List<String> workers, ExpertPopularity load, int redundantSlots) {
        boolean[] sparse = m.sparse();
        long[][] tokens = new long[sparse.length][];
        for (int l = 0; l < sparse.length; l++) {
            if (sparse[l]) {
                tokens[l] = new long[m.experts()];
                for (int e = 0; e < m.experts(); e++) {
                    tokens[l][e] = Math.round(load.share(l, e) * SCALE);
                }
            }
        }
        return BalancedPlacement.place(ExpertLoad.of(m.experts(), tokens), workers, redundantSlots, 0);
    }
}
