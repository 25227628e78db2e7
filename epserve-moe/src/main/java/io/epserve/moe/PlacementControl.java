package io.epserve.moe;

import java.util.List;

/**
 * A dispatcher whose placement can change while it serves (DESIGN.md §5): the one it dispatches
 * under now, the routed tokens it has seen, and a live move to a new epoch.
 */
public interface PlacementControl {
    /** The placement of the current epoch. */
    ExpertPlacement placement();

    /**
     * Moves to {@code next} (a higher epoch) without a pause: workers map the experts they gain
     * while the current epoch keeps serving, the switch happens between two dispatches once all
     * have acknowledged, and what a worker no longer holds is released after it. Throws, keeping
     * the current placement, when any worker fails to take its share.
     */
    void updatePlacement(ExpertPlacement next);

    /** The routed tokens counted by this dispatcher (total and sliding window). */
    RoutedTokens routedTokens();

    /**
     * The host label of each of {@code workers} (for the hierarchical balanced policy), or null
     * when this control knows none: then the rebalancer's configured labels apply.
     */
    default List<String> hostLabels(List<String> workers) {
        return null;
    }
}
