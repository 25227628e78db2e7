package io.epserve.server;

import io.epserve.moe.Rebalancer;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

/**
 * The placement's metrics (names agreed for the whole project): {@code epserve_placement_epoch},
 * {@code epserve_placement_balancedness{layer}} (mean / max per-worker load under the load
 * window, 0..1), {@code epserve_rebalances_total} and {@code epserve_rebalance_duration_seconds}.
 * Registered once a {@link Rebalancer} is bound; the histogram observes every completed change.
 */
public final class PlacementMetrics {
    private final Histogram duration;
    private volatile Rebalancer bound;

    public PlacementMetrics(PrometheusRegistry registry) {
        duration = Histogram.builder().name("epserve_rebalance_duration_seconds")
                .help("Duration of placement changes: computing the placement, workers mapping what they gain, the switch")
                .classicUpperBounds(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60).classicOnly().register(registry);
        GaugeWithCallback.builder().name("epserve_placement_epoch").help("Epoch of the serving expert placement")
                .callback(cb -> {
                    Rebalancer r = bound;
                    if (r != null) {
                        cb.call(r.control().placement().epoch());
                    }
                }).register(registry);
        GaugeWithCallback.builder().name("epserve_placement_balancedness")
                .help("Mean over max per-worker routed tokens of a sparse layer under the load window (1 = perfectly balanced)")
                .labelNames("layer").callback(cb -> {
                    Rebalancer r = bound;
                    if (r == null) {
                        return;
                    }
                    var p = r.control().placement();
                    double[] b = r.balancedness();
                    int i = 0;
                    for (int l = 0; l < p.layers(); l++) {
                        if (p.isSparse(l)) {
                            cb.call(b[i++], Integer.toString(l));
                        }
                    }
                }).register(registry);
        CounterWithCallback.builder().name("epserve_rebalances_total").help("Placement changes made (new epochs serving)")
                .callback(cb -> {
                    Rebalancer r = bound;
                    cb.call(r == null ? 0 : r.rebalances());
                }).register(registry);
    }

    /** For {@link Rebalancer}'s listener: observes the duration of every change made. */
    public void observe(Rebalancer.Outcome o) {
        if (o.changed()) {
            duration.observe(o.seconds());
        }
    }

    public void bind(Rebalancer r) {
        bound = r;
    }
}
