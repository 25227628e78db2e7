package io.epserve.server;

import java.util.Map;

/**
 * Whether the model's expert layer can serve, for {@code /ready} and the {@code epserve_ready} and
 * {@code epserve_worker_up} gauges: remote expert workers can die or hang while the engine is
 * fine. Both methods answer at once from what the source last saw (no I/O on the caller's thread).
 */
public interface Readiness {
    /** Why the expert layer cannot serve now (naming the workers at fault), or null when it can. */
    String notReadyReason();

    /** Up (true) or down per remote expert worker; empty when the experts run in process. */
    Map<String, Boolean> workersUp();

    /**
     * Whether generations go on while workers are down, because the frontend then computes their
     * experts itself (failover): a worker down is then reported (/ready, gauges) but refuses no
     * request, since refusing would fail exactly the requests failover keeps alive.
     */
    default boolean servesWhileWorkersDown() {
        return false;
    }
}
