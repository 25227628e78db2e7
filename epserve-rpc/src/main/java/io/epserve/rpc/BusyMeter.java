package io.epserve.rpc;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Busy fractions from cumulative busy-time counters (such as a frontend's
 * {@code epserve_worker_compute_seconds_total{worker}}): each call takes the counters now and
 * gives, for every worker also seen at the previous call, the busy time added per wall time in
 * between. Pure (the caller passes the time), so the arithmetic is unit-tested.
 *
 * <p>A counter that went down started again from zero (the frontend made a new link after a
 * re-placement, or restarted): its whole value is what was added. A worker the counters do not
 * name computed nothing for the frontend (it has no experts yet): 0 s.
 */
public final class BusyMeter {
    private record Sample(long nanos, double seconds) {}

    private final Map<String, Sample> previous = new HashMap<>();

    /**
     * The busy fractions since the previous call of the {@code workers} measured then too (in
     * {@code workers}' order), from {@code busySeconds} (cumulative busy seconds by worker) at
     * {@code nanos}.
     */
    public List<ScalingPolicy.WorkerLoad> measure(long nanos, List<String> workers, Map<String, Double> busySeconds) {
        List<ScalingPolicy.WorkerLoad> out = new ArrayList<>();
        Map<String, Sample> now = new HashMap<>();
        for (String w : workers) {
            double s = Math.max(0, busySeconds.getOrDefault(w, 0.0));
            now.put(w, new Sample(nanos, s));
            Sample p = previous.get(w);
            if (p == null || nanos <= p.nanos()) {
                continue;
            }
            double added = s >= p.seconds() ? s - p.seconds() : s;
            out.add(new ScalingPolicy.WorkerLoad(w, added / ((nanos - p.nanos()) / 1e9)));
        }
        previous.clear();
        previous.putAll(now);
        return out;
    }
}
