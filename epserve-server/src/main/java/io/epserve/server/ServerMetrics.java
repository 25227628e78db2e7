package io.epserve.server;

import io.epserve.engine.EngineObserver;
import io.epserve.engine.EngineStats;
import io.epserve.engine.FinishReason;
import io.epserve.moe.RoutingResult;
import io.prometheus.metrics.core.datapoints.CounterDataPoint;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.CounterWithCallback;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BooleanSupplier;
import java.util.function.DoubleSupplier;
import java.util.function.IntToDoubleFunction;
import java.util.function.Supplier;
import java.util.function.ToDoubleFunction;

/**
 * The server's Prometheus metrics (text exposition at {@code /metrics}) and the raw counters the
 * live view samples. Engine events arrive on the engine thread ({@link EngineObserver}); HTTP
 * outcomes from the event loops. Everything here is a counter add or a histogram observation, so
 * the engine thread pays a few nanoseconds per event.
 *
 * <p>Names follow Prometheus conventions: {@code epserve_} prefix, base units
 * ({@code _seconds}), {@code _total} on counters.
 */
public final class ServerMetrics implements EngineObserver {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final PrometheusTextFormatWriter writer = PrometheusTextFormatWriter.create();

    private final Counter requests;
    private final Counter finished;
    private final Counter promptTokens;
    private final Counter generationTokens;
    private final Counter preemptions;
    private final Counter connectionsRefused;
    private final Counter headerTimeouts;
    private final Histogram ttft;
    private final Histogram tpot;
    private final Histogram e2e;
    private final Histogram stepBatch;
    private final Histogram stepTokens;
    private final Histogram stepDuration;

    /** Cumulative counts the live view takes differences of. */
    final LongAdder generatedTotal = new LongAdder();
    final LongAdder promptTotal = new LongAdder();
    final LongAdder finishedTotal = new LongAdder();
    final LongAdder stepsTotal = new LongAdder();
    final LongAdder stepSequencesTotal = new LongAdder();
    final LongAdder preemptionsTotal = new LongAdder();
    /** Per finished request, for the live view's percentiles: drained once a second. */
    final ConcurrentLinkedQueue<double[]> recentLatencies = new ConcurrentLinkedQueue<>();

    private final Map<String, Long> firstTokenNanos = new ConcurrentHashMap<>();

    private volatile Attached attached;

    /** The model-dependent part, set when a model is served. */
    private record Attached(ExpertLayout layout, AtomicLongArray routed, CounterDataPoint[][] routedPoints,
                            Supplier<EngineStats> stats) {}

    public ServerMetrics() {
        requests = Counter.builder().name("epserve_requests_total")
                .help("API requests answered, by endpoint and HTTP status (a stream counts when its headers are sent)")
                .labelNames("endpoint", "status").register(registry);
        finished = Counter.builder().name("epserve_requests_finished_total")
                .help("Requests the engine ended, by reason: stop (EOS or stop string), length (max tokens), cancelled (client gone), error")
                .labelNames("reason").register(registry);
        promptTokens = Counter.builder().name("epserve_prompt_tokens_total")
                .help("Prompt tokens of finished requests").register(registry);
        generationTokens = Counter.builder().name("epserve_generation_tokens_total")
                .help("Tokens generated").register(registry);
        preemptions = Counter.builder().name("epserve_preemptions_total")
                .help("Running sequences preempted (KV blocks freed, recomputed later)").register(registry);
        connectionsRefused = Counter.builder().name("epserve_http_connections_refused_total")
                .help("Connections answered 503 and closed because the open-connection cap was reached").register(registry);
        headerTimeouts = Counter.builder().name("epserve_http_header_timeouts_total")
                .help("Connections closed because a request's headers did not arrive within the header timeout").register(registry);
        ttft = Histogram.builder().name("epserve_time_to_first_token_seconds")
                .help("Time from a request's arrival at the engine to its first generated token")
                .classicUpperBounds(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
                        7.5, 10.0, 20.0, 40.0, 80.0)
                .classicOnly().register(registry);
        tpot = Histogram.builder().name("epserve_time_per_output_token_seconds")
                .help("Mean time between a request's output tokens after the first (its decode time / (tokens - 1))")
                .classicUpperBounds(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                        1.0, 2.5, 5.0)
                .classicOnly().register(registry);
        e2e = Histogram.builder().name("epserve_request_duration_seconds")
                .help("End-to-end time of a request in the engine, from arrival to its last token")
                .classicUpperBounds(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 120.0, 240.0, 480.0)
                .classicOnly().register(registry);
        stepBatch = Histogram.builder().name("epserve_step_batch_size")
                .help("Sequences per engine step (prefill chunks + decodes run together)")
                .classicUpperBounds(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 256, 512)
                .classicOnly().register(registry);
        stepTokens = Histogram.builder().name("epserve_step_tokens")
                .help("Tokens per engine step (prefill + decode)")
                .classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
                .classicOnly().register(registry);
        stepDuration = Histogram.builder().name("epserve_step_duration_seconds")
                .help("Wall time of one engine step")
                .classicUpperBounds(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
                .classicOnly().register(registry);
    }

    /**
     * Registers the model-dependent metrics: engine gauges from {@code stats}, per-(layer, expert)
     * routed tokens, per-worker load and imbalance, and transport counters when {@code workers} is
     * given (remote workers). Called once, when the server starts serving a model.
     *
     * @param imbalance per sparse layer, the max/mean load over workers in the live window
     */
    void attach(ExpertLayout layout, Supplier<EngineStats> stats, WorkerStatsSource workers,
                IntToDoubleFunction imbalance) {
        if (attached != null) {
            throw new IllegalStateException("metrics already attached to a model");
        }
        Counter routed = Counter.builder().name("epserve_expert_routed_tokens_total")
                .help("Tokens the router sent to each expert of each sparse layer (one per token and top-k slot)")
                .labelNames("layer", "expert").register(registry);
        CounterDataPoint[][] points = new CounterDataPoint[layout.layers()][];
        for (int l = 0; l < layout.layers(); l++) {
            points[l] = new CounterDataPoint[layout.sparse()[l] ? layout.experts() : 0];
            for (int e = 0; e < points[l].length; e++) {
                points[l][e] = routed.labelValues(Integer.toString(l), Integer.toString(e));
            }
        }
        gauge("epserve_running_requests", "Requests in the running batch", () -> stats.get().running());
        gauge("epserve_waiting_requests", "Requests waiting to be scheduled", () -> stats.get().waiting());
        gauge("epserve_kv_blocks_used", "KV cache blocks in use", () -> stats.get().kvBlocksUsed());
        gauge("epserve_kv_blocks_capacity", "KV cache blocks in the pool", () -> stats.get().kvBlocksTotal());
        gauge("epserve_kv_block_size_tokens", "Tokens per KV cache block", () -> stats.get().kvBlockSize());
        gauge("epserve_kv_cache_usage_ratio", "Fraction of the KV cache blocks in use", () -> {
            EngineStats s = stats.get();
            return s.kvBlocksTotal() == 0 ? 0 : (double) s.kvBlocksUsed() / s.kvBlocksTotal();
        });
        CounterWithCallback.builder().name("epserve_steps_total").help("Engine steps run")
                .callback(cb -> cb.call(stats.get().steps())).register(registry);
        CounterWithCallback.builder().name("epserve_prefix_cache_queried_tokens_total")
                .help("Prompt tokens of admitted requests looked up in the prefix cache")
                .callback(cb -> cb.call(stats.get().prefixQueriedTokens())).register(registry);
        CounterWithCallback.builder().name("epserve_prefix_cache_hit_tokens_total")
                .help("Prompt tokens whose KV blocks were reused from the prefix cache (hit rate = hit / queried)")
                .callback(cb -> cb.call(stats.get().prefixHitTokens())).register(registry);
        gauge("epserve_prefix_cache_blocks", "KV cache blocks holding a cached prompt block (in use or evictable)",
                () -> stats.get().prefixCachedBlocks());
        GaugeWithCallback.builder().name("epserve_expert_load_imbalance")
                .help("Per sparse layer, max over workers of the tokens routed to the worker's experts / the mean over workers, "
                        + "in the last " + LiveStats.WINDOW_SECONDS + " s (1 = balanced; 0 = no tokens)")
                .labelNames("layer")
                .callback(cb -> {
                    for (int l : layout.sparseLayers()) {
                        cb.call(imbalance.applyAsDouble(l), Integer.toString(l));
                    }
                }).register(registry);
        CounterWithCallback.builder().name("epserve_worker_routed_tokens_total")
                .help("Tokens routed to the experts each expert worker holds, over all sparse layers")
                .labelNames("worker")
                .callback(cb -> {
                    for (int w = 0; w < layout.workers().size(); w++) {
                        cb.call(workerRouted(w), layout.workers().get(w));
                    }
                }).register(registry);
        if (workers != null) {
            workerCounter("epserve_worker_calls_total", "Dispatch calls to each expert worker", workers, s -> s.calls());
            workerCounter("epserve_worker_sent_bytes_total", "Bytes sent to each expert worker", workers, s -> s.bytesSent());
            workerCounter("epserve_worker_received_bytes_total", "Bytes received from each expert worker", workers, s -> s.bytesReceived());
            workerCounter("epserve_worker_compute_seconds_total", "Compute time each expert worker reported", workers,
                    s -> s.computeNanos() / 1e9);
            workerCounter("epserve_worker_round_trip_seconds_total", "Round-trip time of dispatch calls to each expert worker, "
                    + "as the frontend saw it", workers, s -> s.roundTripNanos() / 1e9);
            workerCounter("epserve_worker_failures_total", "Dispatch calls each expert worker failed", workers, s -> s.failures());
        }
        attached = new Attached(layout, new AtomicLongArray(layout.layers() * layout.experts()), points, stats);
    }

    /**
     * {@code epserve_ready} (1 when /ready answers 200) and {@code epserve_worker_up{worker}} (1 per
     * remote expert worker that answers its checks, 0 per one that does not).
     */
    void readiness(BooleanSupplier ready, Supplier<Map<String, Boolean>> workersUp) {
        gauge("epserve_ready", "1 when the server takes generations (/ready answers 200), else 0", () -> ready.getAsBoolean() ? 1 : 0);
        GaugeWithCallback.builder().name("epserve_worker_up").help("1 per remote expert worker that answers its checks, 0 per one that does not")
                .labelNames("worker").callback(cb -> workersUp.get().forEach((w, up) -> cb.call(up ? 1 : 0, w))).register(registry);
    }

    /** {@code epserve_worker_state{worker,state}}: per remote expert worker, 1 for its current state and 0 for the others. */
    void workerStates(Supplier<WorkerTable> table) {
        GaugeWithCallback.builder().name("epserve_worker_state")
                .help("Per remote expert worker, 1 for its state (joining, serving, draining, suspect, dead), 0 for the others")
                .labelNames("worker", "state").callback(cb -> {
                    WorkerTable t = table.get();
                    if (t == null) {
                        return;
                    }
                    for (WorkerTable.Worker w : t.snapshot().workers()) {
                        for (String state : WorkerTable.STATES) {
                            cb.call(state.equals(w.state()) ? 1 : 0, w.address(), state);
                        }
                    }
                }).register(registry);
    }

    private void gauge(String name, String help, DoubleSupplier value) {
        GaugeWithCallback.builder().name(name).help(help).callback(cb -> cb.call(value.getAsDouble())).register(registry);
    }

    private void workerCounter(String name, String help, WorkerStatsSource source,
                               ToDoubleFunction<WorkerStatsSource.WorkerStats> f) {
        CounterWithCallback.builder().name(name).help(help).labelNames("worker").callback(cb -> {
            for (WorkerStatsSource.WorkerStats s : source.snapshot()) {
                cb.call(f.applyAsDouble(s), s.worker());
            }
        }).register(registry);
    }

    /** Cumulative tokens routed to (layer, expert), or 0 before a model is attached. */
    long routed(int layer, int expert) {
        Attached a = attached;
        return a == null ? 0 : a.routed.get(layer * a.layout.experts() + expert);
    }

    /** Cumulative tokens routed to the experts a worker holds (primary replicas), over all sparse layers. */
    long workerRouted(int worker) {
        Attached a = attached;
        if (a == null) {
            return 0;
        }
        long sum = 0;
        for (int l = 0; l < a.layout.layers(); l++) {
            int[] owner = a.layout.owner()[l];
            for (int e = 0; e < owner.length; e++) {
                if (owner[e] == worker) {
                    sum += a.routed.get(l * a.layout.experts() + e);
                }
            }
        }
        return sum;
    }

    // ---------------------------------------------------------------- HTTP side

    /** An API request got its status (a stream: its 200 headers). */
    void request(Endpoint endpoint, int status) {
        requests.labelValues(endpoint == null ? "other" : endpoint.label, Integer.toString(status)).inc();
    }

    /** A connection over the open-connection cap was refused. */
    void connectionRefused() {
        connectionsRefused.inc();
    }

    /** A connection's request headers were too slow. */
    void headerTimeout() {
        headerTimeouts.inc();
    }

    /** A token reached a request's listener. */
    void tokenGenerated() {
        generationTokens.inc();
        generatedTotal.increment();
    }

    // ---------------------------------------------------------------- engine side

    @Override
    public void onStep(int sequences, int prefillTokens, int decodeTokens, long nanos) {
        stepBatch.observe(sequences);
        stepTokens.observe(prefillTokens + decodeTokens);
        stepDuration.observe(nanos / 1e9);
        stepsTotal.increment();
        stepSequencesTotal.add(sequences);
    }

    @Override
    public void onRouting(int layer, RoutingResult routing) {
        Attached a = attached;
        if (a == null || layer >= a.layout.layers() || !a.layout.sparse()[layer]) {
            return;
        }
        int experts = a.layout.experts();
        int[] counts = new int[experts];
        int n = routing.tokens() * routing.k();
        int[] ids = routing.experts();
        for (int i = 0; i < n; i++) {
            int e = ids[i];
            if (e >= 0 && e < experts) {
                counts[e]++;
            }
        }
        for (int e = 0; e < experts; e++) {
            if (counts[e] != 0) {
                a.routed.addAndGet(layer * experts + e, counts[e]);
                a.routedPoints[layer][e].inc(counts[e]);
            }
        }
    }

    @Override
    public void onFirstToken(String requestId, long nanos) {
        firstTokenNanos.put(requestId, nanos);
        ttft.observe(nanos / 1e9);
    }

    @Override
    public void onFinish(String requestId, FinishReason reason, int prompt, int generated, long nanos) {
        Long first = firstTokenNanos.remove(requestId);
        finished.labelValues(reason.name().toLowerCase(Locale.ROOT)).inc();
        finishedTotal.increment();
        promptTokens.inc(prompt);
        promptTotal.add(prompt);
        double tpotSeconds = Double.NaN;
        if (reason != FinishReason.CANCELLED) {
            e2e.observe(nanos / 1e9);
            if (first != null && generated > 1) {
                tpotSeconds = (nanos - first) / 1e9 / (generated - 1);
                tpot.observe(tpotSeconds);
            }
        }
        recentLatencies.add(new double[] {first == null ? Double.NaN : first / 1e9, tpotSeconds,
                reason == FinishReason.CANCELLED ? Double.NaN : nanos / 1e9});
    }

    @Override
    public void onError(String requestId, RuntimeException error) {
        firstTokenNanos.remove(requestId);
        finished.labelValues("error").inc();
    }

    @Override
    public void onPreempt(String requestId) {
        preemptions.inc();
        preemptionsTotal.increment();
    }

    // ---------------------------------------------------------------- exposition

    String contentType() {
        return writer.getContentType();
    }

    byte[] scrape() {
        ByteArrayOutputStream out = new ByteArrayOutputStream(16 << 10);
        try {
            writer.write(out, registry.scrape());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    /** The registry, for embedding the metrics in another exporter. */
    public PrometheusRegistry registry() {
        return registry;
    }
}
