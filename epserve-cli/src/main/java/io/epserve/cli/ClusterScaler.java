package io.epserve.cli;

import io.epserve.rpc.BusyMeter;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.ScalingPolicy;
import io.epserve.rpc.WorkerSupervisor;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * Grows and shrinks the worker processes of {@code epserve cluster} with load: every
 * {@code interval} it reads how long each worker computed, as the frontend the workers joined
 * counts it ({@code epserve_worker_compute_seconds_total{worker}} of its {@code /metrics}), turns
 * that into busy fractions ({@link BusyMeter}) and asks the {@link ScalingPolicy}; an Add starts a
 * worker (which joins the frontend and gets experts at its next placement epoch), a Retire sends
 * one SIGTERM (it drains and exits 0). A change is in progress from the decision until the added
 * worker listens or the retired one is gone; the policy starts its windows over meanwhile.
 *
 * <p>Why the frontend's counter: it is the time the workers reported computing for that frontend,
 * per call, so it is the expert layer's busy time whatever else runs on the machine; a worker's
 * own process has no other load signal, and the frontend already exports it for dashboards.
 */
final class ClusterScaler implements AutoCloseable {
    private final ScalingPolicy policy;
    private final WorkerSupervisor supervisor;
    private final LocalWorkerProcesses procs;
    private final URI metrics;
    private final Duration drainTimeout;
    private final PrintStream log;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final BusyMeter meter = new BusyMeter();
    private final ScheduledExecutorService thread = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "epserve-cluster-scaler");
        t.setDaemon(true);
        return t;
    });
    /** The worker told to leave and not yet gone, or -1 (touched on the scaler's thread and the supervisor's). */
    private volatile int retiring = -1;
    private String lastProblem;

    ClusterScaler(ScalingPolicy policy, WorkerSupervisor supervisor, LocalWorkerProcesses procs, URI metrics, Duration drainTimeout,
                  PrintStream log) {
        this.policy = Objects.requireNonNull(policy, "policy");
        this.supervisor = Objects.requireNonNull(supervisor, "supervisor");
        this.procs = Objects.requireNonNull(procs, "procs");
        this.metrics = Objects.requireNonNull(metrics, "metrics");
        this.drainTimeout = Objects.requireNonNull(drainTimeout, "drainTimeout");
        this.log = Objects.requireNonNull(log, "log");
    }

    ClusterScaler start(Duration interval) {
        thread.scheduleWithFixedDelay(this::tick, interval.toNanos(), interval.toNanos(), TimeUnit.NANOSECONDS);
        return this;
    }

    /** The supervisor's events: a retired worker that is gone ends the change in progress. */
    void onEvent(WorkerSupervisor.Event e) {
        if (e instanceof WorkerSupervisor.Event.Retired r && r.worker() == retiring) {
            retiring = -1;
        }
    }

    private void tick() {
        try {
            Map<String, Double> busy;
            try {
                busy = computeSeconds(http, metrics);
            } catch (IOException | RuntimeException e) {
                problem("cannot read " + metrics + ": " + e.getMessage() + "; not scaling until it answers");
                return;
            }
            if (lastProblem != null) {
                log.println("epserve cluster: " + metrics + " answers again");
                lastProblem = null;
            }
            List<Integer> active = procs.active();
            List<String> addresses = active.stream().map(procs::address).toList();
            List<ScalingPolicy.WorkerLoad> loads = meter.measure(System.nanoTime(), addresses, busy);
            ScalingPolicy.Decision d = policy.decide(System.nanoTime(), active.size(), loads, retiring < 0);
            switch (d) {
                case ScalingPolicy.Decision.Hold h -> { }
                case ScalingPolicy.Decision.Add a -> {
                    log.printf(Locale.ROOT, "epserve cluster: scaling up (%s): starting a worker%n", a.why());
                    supervisor.add(); // blocks this thread until it listens: the change is in progress meanwhile
                }
                case ScalingPolicy.Decision.Retire r -> {
                    int i = active.get(addresses.indexOf(r.worker()));
                    log.printf(Locale.ROOT, "epserve cluster: scaling down (%s): retiring worker %d (%s)%n", r.why(), i, r.worker());
                    retiring = i;
                    supervisor.retire(i, drainTimeout);
                }
            }
        } catch (RuntimeException e) {
            problem("scaling failed: " + e.getMessage());
        }
    }

    private void problem(String message) {
        if (!message.equals(lastProblem)) {
            log.println("epserve cluster: " + message);
            lastProblem = message;
        }
    }

    /** Cumulative compute seconds per worker address from a frontend's /metrics. */
    static Map<String, Double> computeSeconds(HttpClient http, URI metrics) throws IOException {
        try {
            return FrontendWorkers.perWorker(FrontendWorkers.get(http, metrics), "epserve_worker_compute_seconds_total");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        }
    }

    @Override
    public void close() {
        thread.shutdownNow();
        try {
            thread.awaitTermination(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
