package io.epserve.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.engine.EngineStats;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;
import java.util.function.Supplier;
import io.epserve.moe.ExpertPlacement;
import java.util.Locale;

/**
 * What the live view shows, sampled once a second from the metrics' cumulative counters: a
 * history of per-second throughput, latency percentiles and engine gauges
 * ({@value #HISTORY_SECONDS} s), and the routed tokens per (layer, expert) and per worker, in
 * total and over the last {@value #WINDOW_SECONDS} s. The same window gives the per-layer
 * expert-load imbalance the metrics export.
 *
 * <p>{@link #tick} runs on one sampler thread; readers (a new viewer, a scrape) synchronize on
 * this object.
 */
final class LiveStats {
    static final int HISTORY_SECONDS = 300;
    static final int WINDOW_SECONDS = 60;
    /** Latency percentiles on the chart are over requests finished in the trailing seconds. */
    static final int LATENCY_SECONDS = 10;

    private final ObjectMapper json;
    private final ServerMetrics metrics;
    private final ExpertLayout layout;
    private final Supplier<EngineStats> stats;
    private final String modelId;
    private final int[] sparseLayers;

    private final Deque<ObjectNode> history = new ArrayDeque<>();
    /** Per-second routed-token deltas of the window, oldest first: [layer * experts + expert]. */
    private final Deque<long[]> routedDeltas = new ArrayDeque<>();
    private final long[] routedWindow;
    private final long[] routedLast;
    /** [time seconds, ttft, tpot, e2e] of requests finished in the latency window. */
    private final Deque<double[]> latencies = new ArrayDeque<>();

    private long lastNanos;
    private long lastGenerated;
    private long lastPrompt;
    private long lastFinished;
    private long lastSteps;
    private long lastStepSequences;
    private long lastPreemptions;
    private ObjectNode lastTick;

    LiveStats(ObjectMapper json, ServerMetrics metrics, ExpertLayout layout, Supplier<EngineStats> stats, String modelId) {
        this.json = json;
        this.metrics = metrics;
        this.layout = layout;
        this.stats = stats;
        this.modelId = modelId;
        this.sparseLayers = layout.sparseLayers();
        this.routedWindow = new long[layout.layers() * layout.experts()];
        this.routedLast = new long[routedWindow.length];
        this.lastNanos = System.nanoTime();
    }

    /** Samples the counters; returns the tick message for the viewers. */
    synchronized ObjectNode tick() {
        long now = System.nanoTime();
        double dt = Math.max(1e-3, (now - lastNanos) / 1e9);
        lastNanos = now;
        long generated = metrics.generatedTotal.sum();
        long prompt = metrics.promptTotal.sum();
        long finished = metrics.finishedTotal.sum();
        long steps = metrics.stepsTotal.sum();
        long stepSeqs = metrics.stepSequencesTotal.sum();
        long preempt = metrics.preemptionsTotal.sum();

        long[] delta = new long[routedWindow.length];
        for (int l : sparseLayers) {
            for (int e = 0; e < layout.experts(); e++) {
                int i = l * layout.experts() + e;
                long v = metrics.routed(l, e);
                delta[i] = v - routedLast[i];
                routedLast[i] = v;
                routedWindow[i] += delta[i];
            }
        }
        routedDeltas.addLast(delta);
        while (routedDeltas.size() > WINDOW_SECONDS) {
            long[] old = routedDeltas.removeFirst();
            for (int i = 0; i < old.length; i++) {
                routedWindow[i] -= old[i];
            }
        }

        double nowSeconds = now / 1e9;
        for (double[] r; (r = metrics.recentLatencies.poll()) != null; ) {
            latencies.addLast(new double[] {nowSeconds, r[0], r[1], r[2]});
        }
        while (!latencies.isEmpty() && latencies.peekFirst()[0] < nowSeconds - LATENCY_SECONDS) {
            latencies.removeFirst();
        }

        EngineStats s = stats.get();
        ObjectNode sec = json.createObjectNode();
        sec.put("t", System.currentTimeMillis());
        sec.put("output_tokens_per_s", round((generated - lastGenerated) / dt));
        sec.put("prompt_tokens_per_s", round((prompt - lastPrompt) / dt));
        sec.put("requests_per_s", round((finished - lastFinished) / dt));
        long dSteps = steps - lastSteps;
        sec.put("steps_per_s", round(dSteps / dt));
        sec.put("batch_size", dSteps == 0 ? 0 : round((double) (stepSeqs - lastStepSequences) / dSteps));
        sec.put("preemptions", preempt - lastPreemptions);
        sec.put("running", s.running());
        sec.put("waiting", s.waiting());
        sec.put("kv_used", s.kvBlocksUsed());
        sec.put("kv_total", s.kvBlocksTotal());
        putPercentiles(sec, "ttft", 1);
        putPercentiles(sec, "tpot", 2);
        putPercentiles(sec, "e2e", 3);
        lastGenerated = generated;
        lastPrompt = prompt;
        lastFinished = finished;
        lastSteps = steps;
        lastStepSequences = stepSeqs;
        lastPreemptions = preempt;
        history.addLast(sec);
        while (history.size() > HISTORY_SECONDS) {
            history.removeFirst();
        }

        ObjectNode tick = json.createObjectNode();
        tick.put("type", "tick");
        tick.set("second", sec);
        putExperts(tick);
        putPlacement(tick);
        WorkerTable t = workerTable;
        if (t != null) {
            tick.set("worker_table", WorkerEndpoints.toJson(json, t.snapshot()));
        }
        lastTick = tick;
        return tick;
    }

    /** The first message a viewer gets: the model's shape and the whole history. */
    synchronized ObjectNode hello() {
        ObjectNode h = json.createObjectNode();
        h.put("type", "hello");
        h.put("model", modelId);
        h.put("experts", layout.experts());
        ArrayNode layers = h.putArray("layers");
        for (int l : sparseLayers) {
            layers.add(l);
        }
        ArrayNode workers = h.putArray("workers");
        layout.workers().forEach(workers::add);
        ArrayNode owner = h.putArray("owner");
        for (int l : sparseLayers) {
            ArrayNode row = owner.addArray();
            for (int w : layout.owner()[l]) {
                row.add(w);
            }
        }
        h.put("history_seconds", HISTORY_SECONDS);
        h.put("window_seconds", WINDOW_SECONDS);
        ArrayNode hist = h.putArray("history");
        history.forEach(hist::add);
        putExperts(h);
        return h;
    }

    /** The remote workers' table, when the experts run on remote workers. */
    private volatile WorkerTable workerTable;

    void workers(WorkerTable t) {
        workerTable = t;
    }

    /** The live placement, once the server has one (set after the model loads). */
    private volatile Supplier<ExpertPlacement> placement;

    void placement(Supplier<ExpertPlacement> p) {
        placement = p;
    }

    /** Epoch, policy and, per sparse layer, each expert's replica count. */
    private void putPlacement(ObjectNode o) {
        Supplier<ExpertPlacement> s = placement;
        if (s == null) {
            return;
        }
        ExpertPlacement p = s.get();
        ObjectNode n = o.putObject("placement");
        n.put("epoch", p.epoch());
        n.put("policy", p.policy().name().toLowerCase(Locale.ROOT));
        ArrayNode reps = n.putArray("replicas");
        for (int l : sparseLayers) {
            ArrayNode row = reps.addArray();
            for (int e = 0; e < p.numExperts(); e++) {
                row.add(p.isSparse(l) ? p.replicaCount(l, e) : 0);
            }
        }
    }

    /** Routed tokens per sparse layer × expert and per worker, in total and in the window. */
    private void putExperts(ObjectNode o) {
        ArrayNode total = o.putArray("routed_total");
        ArrayNode recent = o.putArray("routed_recent");
        int w = layout.workers().size();
        long[] workerTotal = new long[w];
        long[] workerRecent = new long[w];
        for (int l : sparseLayers) {
            ArrayNode t = total.addArray();
            ArrayNode r = recent.addArray();
            for (int e = 0; e < layout.experts(); e++) {
                int i = l * layout.experts() + e;
                t.add(routedLast[i]);
                r.add(routedWindow[i]);
                workerTotal[layout.owner()[l][e]] += routedLast[i];
                workerRecent[layout.owner()[l][e]] += routedWindow[i];
            }
        }
        ArrayNode wt = o.putArray("worker_total");
        ArrayNode wr = o.putArray("worker_recent");
        for (int i = 0; i < w; i++) {
            wt.add(workerTotal[i]);
            wr.add(workerRecent[i]);
        }
        ArrayNode imb = o.putArray("imbalance");
        for (int l : sparseLayers) {
            imb.add(round(imbalanceUnsync(l)));
        }
    }

    /** Max over workers / mean over workers of the tokens routed at layer l in the window; 0 without tokens. */
    synchronized double imbalance(int layer) {
        return imbalanceUnsync(layer);
    }

    private double imbalanceUnsync(int layer) {
        int w = layout.workers().size();
        long[] load = new long[w];
        long sum = 0;
        for (int e = 0; e < layout.experts(); e++) {
            long v = routedWindow[layer * layout.experts() + e];
            load[layout.owner()[layer][e]] += v;
            sum += v;
        }
        if (sum == 0) {
            return 0;
        }
        return Arrays.stream(load).max().orElse(0) / ((double) sum / w);
    }

    private void putPercentiles(ObjectNode sec, String name, int column) {
        List<Double> v = new ArrayList<>();
        for (double[] r : latencies) {
            if (!Double.isNaN(r[column])) {
                v.add(r[column]);
            }
        }
        if (v.isEmpty()) {
            sec.putNull(name + "_p50");
            sec.putNull(name + "_p90");
            return;
        }
        v.sort(null);
        sec.put(name + "_p50", percentile(v, 0.5));
        sec.put(name + "_p90", percentile(v, 0.9));
    }

    /** Nearest-rank percentile. */
    static double percentile(List<Double> sorted, double q) {
        int rank = (int) Math.ceil(q * sorted.size());
        return sorted.get(Math.max(0, Math.min(sorted.size() - 1, rank - 1)));
    }

    private static double round(double x) {
        return Math.round(x * 1000.0) / 1000.0;
    }
}
