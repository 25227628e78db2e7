package io.epserve.server;

import java.util.List;

/**
 * Per-worker transport counters of a dispatcher that has them (the gRPC dispatcher's
 * {@code DispatchStats}): exported as {@code epserve_worker_*} counters when given to the
 * server. In-process workers have no transport; their load comes from routing alone.
 */
@FunctionalInterface
public interface WorkerStatsSource {
    /** One worker's counters since the dispatcher started (monotonic). */
    record WorkerStats(String worker, long calls, long bytesSent, long bytesReceived, long computeNanos, long roundTripNanos,
                       long failures) {}

    List<WorkerStats> snapshot();
}
