package io.epserve.cli;

import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.WorkerSupervisor;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReferenceArray;
import java.util.concurrent.locks.LockSupport;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code epserve bench failover}: what a worker failure costs the clients. Closed-loop streaming
 * clients run against a {@code serve} frontend on supervised worker processes (as
 * {@code epserve cluster} runs them), first without faults (the baseline), then with one worker
 * killed (or stopped) every interval; every output is checked against the first output of the
 * same prompt (greedy, so any wrong token shows). Reports failed requests and wrong outputs (both
 * must be 0), latency percentiles of both phases, and per fault how long until the worker process
 * listened again, until the frontend computed on every worker again, and until the victim served again.
 */
@Command(name = "failover", mixinStandardHelpOptions = true,
        description = {"Kill (or stop) an expert worker every --kill-every while --clients closed-loop streaming clients "
                + "run against a serve frontend on --workers supervised worker processes on loopback, after a baseline "
                + "phase without faults. Prints failed requests and wrong outputs (greedy: each prompt's output must not "
                + "change), p50/p99 request latency without and with faults, and per fault the time until the worker "
                + "listened again, until the frontend computed on all workers again (redundancy restored) and until the "
                + "victim served again. Exits 1 when any request failed or any output changed."})
final class BenchFailoverCommand implements Callable<Integer> {
    /** Histograms in microseconds, up to an hour, 3 significant digits. */
    private static final long MAX_MICROS = 3_600_000_000L;
    private static final Duration POLL = Duration.ofMillis(100);
    /** How long the load goes on after the fault phase while the last fault has not recovered. */
    static final Duration RECOVERY_WAIT = Duration.ofSeconds(60);

    @Option(names = "--model", paramLabel = "DIR|FILE.gguf", description = "Hugging Face model directory. Default: the built-in demo model.")
    Path model;

    @Option(names = "--demo", hidden = true, defaultValue = "standard", description = "Demo model size: standard or tiny (tests).")
    String demo;

    @Option(names = "--clients", paramLabel = "C", defaultValue = "32", description = "Closed-loop streaming clients (default ${DEFAULT-VALUE}).")
    int clients;

    @Option(names = "--workers", paramLabel = "N", defaultValue = "4", description = "Worker processes (default ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--worker-threads", paramLabel = "T", defaultValue = "1", description = "Kernel threads per worker (default ${DEFAULT-VALUE}).")
    int workerThreads;

    @Option(names = "--kill-every", paramLabel = "DURATION", defaultValue = "20s", converter = DurationConverter.class,
            description = "Time between faults (default ${DEFAULT-VALUE}); the first comes at the start of the fault phase.")
    Duration killEvery;

    @Option(names = "--duration", paramLabel = "DURATION", defaultValue = "2m", converter = DurationConverter.class,
            description = "Length of the fault phase (default ${DEFAULT-VALUE}); the load then goes on until the last fault has "
                    + "recovered, at most 60 s more.")
    Duration duration;

    @Option(names = "--baseline", paramLabel = "DURATION", defaultValue = "30s", converter = DurationConverter.class,
            description = "Length of the phase without faults, measured before it (default ${DEFAULT-VALUE}).")
    Duration baseline;

    @Option(names = "--warmup", paramLabel = "DURATION", defaultValue = "15s", converter = DurationConverter.class,
            description = "Unmeasured load before the baseline, while the JVMs compile (default ${DEFAULT-VALUE}); at least until "
                    + "every client has finished one request.")
    Duration warmup;

    @Option(names = "--signal", paramLabel = "kill|stop", defaultValue = "kill",
            description = "kill: SIGKILL (the supervisor restarts the worker); stop: SIGSTOP, a hang the dispatch deadline "
                    + "catches, then SIGCONT after --stop-for (default ${DEFAULT-VALUE}).")
    String signal;

    @Option(names = "--stop-for", paramLabel = "DURATION", converter = DurationConverter.class,
            description = "With --signal stop: how long a worker stays stopped. Default: half of --kill-every.")
    Duration stopFor;

    @Option(names = "--prompt-tokens", paramLabel = "P", defaultValue = "32", description = "Prompt length in tokens (default ${DEFAULT-VALUE}).")
    int promptTokens;

    @Option(names = "--max-tokens", paramLabel = "G", defaultValue = "64", description = "Tokens generated per request (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--worker-timeout", paramLabel = "MS", defaultValue = "2000",
            description = "The frontend's dispatch deadline (serve --worker-timeout): a hung worker's step moves to the frontend "
                    + "after it (default ${DEFAULT-VALUE}).")
    long workerTimeoutMillis;

    @Option(names = "--kv-memory", paramLabel = "SIZE", defaultValue = "512MiB", description = "The frontend's KV cache (default ${DEFAULT-VALUE}).")
    String kvMemory;

    /** The phases of a run; requests count in the phase they started in. */
    enum Phase { WARMUP, BASELINE, FAULTS }

    /** One phase's requests. */
    static final class PhaseStats {
        final ConcurrentHistogram e2e = new ConcurrentHistogram(MAX_MICROS, 3);
        final ConcurrentHistogram ttft = new ConcurrentHistogram(MAX_MICROS, 3);
        final AtomicInteger ok = new AtomicInteger();
        final AtomicInteger wrong = new AtomicInteger();
        final Map<String, Integer> failures = new TreeMap<>();

        synchronized void failed(String why) {
            failures.merge(why, 1, Integer::sum);
        }

        synchronized int failed() {
            return failures.values().stream().mapToInt(Integer::intValue).sum();
        }
    }

    /** One fault: when, which worker, and when (nanoTime, 0 until seen) each recovery step was seen. */
    static final class Fault {
        final int worker;
        final String address;
        final long pid;
        final long at;
        /** The frontend's placement epoch when the fault was sent. */
        final long epochAtFault;
        /** Whether the frontend was seen to list the victim as not serving since the fault. */
        boolean sawDown;
        long listening;
        long restored;
        long serving;

        Fault(int worker, String address, long pid, long at, long epochAtFault) {
            this.worker = worker;
            this.address = address;
            this.pid = pid;
            this.at = at;
            this.epochAtFault = epochAtFault;
        }

        boolean done() {
            return restored != 0 && serving != 0 && listening != 0;
        }
    }

    @Override
    public Integer call() throws Exception {
        boolean stop = switch (signal) {
            case "kill" -> false;
            case "stop" -> true;
            default -> throw new Main.UsageError("--signal must be kill or stop, got '" + signal + "'");
        };
        Duration hang = stopFor != null ? stopFor : killEvery.dividedBy(2);
        if (clients < 1 || workers < 1 || workerThreads < 1 || promptTokens < 1 || maxTokens < 1) {
            throw new Main.UsageError("--clients, --workers, --worker-threads, --prompt-tokens and --max-tokens must be at least 1");
        }
        if (killEvery.isZero() || duration.compareTo(killEvery) < 0) {
            throw new Main.UsageError("--duration (" + DurationConverter.format(duration) + ") must hold at least one --kill-every ("
                    + DurationConverter.format(killEvery) + ")");
        }
        if (baseline.isZero()) {
            throw new Main.UsageError("--baseline must be positive: the latency with faults is compared with it");
        }
        if (stop && (hang.isZero() || hang.compareTo(killEvery) >= 0)) {
            throw new Main.UsageError("--stop-for must be positive and shorter than --kill-every");
        }
        if (workerTimeoutMillis < 1) {
            throw new Main.UsageError("--worker-timeout must be at least 1 ms");
        }
        Path dir = ClusterCommand.modelDir(model, demo);
        PrintStream out = System.out;
        PrintStream err = System.err;
        long t0 = System.nanoTime();
        Map<Integer, Long> listeningAgain = new ConcurrentHashMap<>();
        try (LocalWorkerProcesses procs = LocalWorkerProcesses.start(workers, "127.0.0.1", 0,
                LocalWorkerProcesses.sameJvm(Main.class.getName(), List.of("-Depserve.threads=" + workerThreads),
                        List.of("worker", "--model", dir.toString())), null, LocalWorkerProcesses.DEFAULT_START_TIMEOUT);
             WorkerSupervisor supervisor = WorkerSupervisor.start(procs, WorkerSupervisor.Backoff.DEFAULT, e -> {
                 err.printf(Locale.ROOT, "[%6.1f s] %s%n", (System.nanoTime() - t0) / 1e9, ClusterCommand.describe(e));
                 if (e instanceof WorkerSupervisor.Event.Restarted) {
                     listeningAgain.put(e.worker(), System.nanoTime());
                 }
             })) {
            ServeCommand serveCommand = new ServeCommand();
            new CommandLine(serveCommand).parseArgs("--model", dir.toString(), "--port", "0", "--workers", String.join(",", procs.addresses()),
                    "--worker-timeout", Long.toString(workerTimeoutMillis), "--kv-memory", kvMemory,
                    "--max-running", Integer.toString(Math.max(clients, 1)), "--no-validate");
            try (ServeCommand.Running serve = serveCommand.start(new PrintStream(OutputStream.nullOutputStream(), true,
                    StandardCharsets.UTF_8), new TerminalProgress(err, false))) {
                return measure(serve, procs, listeningAgain, stop, hang, t0, out, err);
            }
        }
    }

    private int measure(ServeCommand.Running serve, LocalWorkerProcesses procs, Map<Integer, Long> listeningAgain, boolean stop,
                        Duration hang, long t0, PrintStream out, PrintStream err) throws Exception {
        HttpClient http = StreamingCompletion.newClient();
        URI base = serve.base().resolve("/");
        String name = serve.served().id();
        int vocab = serve.model().config().vocabSize();
        int[][] prompts = new int[2 * clients][];
        for (int p = 0; p < prompts.length; p++) {
            prompts[p] = new SplittableRandom(7919L * p + 1).ints(promptTokens, 0, vocab).toArray();
        }
        AtomicReferenceArray<int[]> expected = new AtomicReferenceArray<>(prompts.length);
        Map<Phase, PhaseStats> stats = new TreeMap<>();
        for (Phase p : Phase.values()) {
            stats.put(p, new PhaseStats());
        }
        // Phase boundaries, set by the loop below: the baseline starts once the warm-up time is over
        // and every client has finished a request (cold JVMs can take longer than --warmup), the
        // faults --baseline later. A request counts in the warm-up if it started there, in the
        // baseline if it also ended before the first fault, else with the faults.
        AtomicLong baselineStart = new AtomicLong(Long.MAX_VALUE);
        AtomicLong faultStart = new AtomicLong(Long.MAX_VALUE);
        AtomicInteger completed = new AtomicInteger();
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicInteger next = new AtomicInteger();
        FrontendWorkers view = new FrontendWorkers(http, base);
        List<Fault> faults = new ArrayList<>();
        err.printf(Locale.ROOT, "bench failover: %d clients, %d workers, warm-up %s, baseline %s, then a %s every %s for %s%n", clients,
                workers, DurationConverter.format(warmup), DurationConverter.format(baseline), stop ? "SIGSTOP" : "SIGKILL",
                DurationConverter.format(killEvery), DurationConverter.format(duration));
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int c = 0; c < clients; c++) {
                pool.submit(() -> {
                    while (running.get()) {
                        long started = System.nanoTime();
                        int n = next.getAndIncrement();
                        int p = n % prompts.length;
                        StreamingCompletion.Result r;
                        try {
                            r = StreamingCompletion.send(http, base, new StreamingCompletion.Request(name, prompts[p], maxTokens, 0.0, n),
                                    Duration.ofMinutes(10), StreamingCompletion.Progress.NONE);
                        } catch (StreamingCompletion.Failure f) {
                            r = null;
                            phase(stats, started, baselineStart, faultStart).failed(f.getMessage());
                        } finally {
                            completed.incrementAndGet();
                        }
                        if (r != null) {
                            PhaseStats s = phase(stats, started, baselineStart, faultStart);
                            s.e2e.recordValue(Math.min(MAX_MICROS, r.e2eNanos() / 1000));
                            s.ttft.recordValue(Math.min(MAX_MICROS, r.ttftNanos() / 1000));
                            s.ok.incrementAndGet();
                            if (!expected.compareAndSet(p, null, r.tokenIds()) && !Arrays.equals(expected.get(p), r.tokenIds())) {
                                s.wrong.incrementAndGet();
                            }
                        }
                    }
                    return null;
                });
            }
            long warmupEnd = System.nanoTime() + warmup.toNanos();
            while (System.nanoTime() < warmupEnd || completed.get() < clients) {
                LockSupport.parkNanos(POLL.toNanos()); // the warm-up's pace; the loop re-checks its end
            }
            baselineStart.set(System.nanoTime());
            err.printf(Locale.ROOT, "[%6.1f s] baseline%n", (baselineStart.get() - t0) / 1e9);
            for (long left; (left = baselineStart.get() + baseline.toNanos() - System.nanoTime()) > 0; ) {
                LockSupport.parkNanos(left); // the baseline phase: load without faults (park may return early)
            }
            faultStart.set(System.nanoTime());
            long end = faultStart.get() + duration.toNanos();
            // the fault schedule, and a poll of the frontend's view of its workers for the recoveries
            long nextFault = faultStart.get();
            Fault stopped = null;
            // after the last fault, the load goes on until every fault has recovered (at most RECOVERY_WAIT)
            while (System.nanoTime() < end || (!faults.isEmpty() && !faults.getLast().done() && System.nanoTime() < end + RECOVERY_WAIT.toNanos())) {
                long now = System.nanoTime();
                if (stopped != null && now >= stopped.at + hang.toNanos()) {
                    ClusterSignals.send("CONT", stopped.pid);
                    stopped.listening = System.nanoTime();
                    stopped = null;
                }
                if (now >= nextFault && now < end && end - now >= killEvery.toNanos() / 2) {
                    int w = faults.size() % workers;
                    Process victim = procs.process(w);
                    Fault f = new Fault(w, procs.address(w), victim.pid(), System.nanoTime(), epoch(view));
                    listeningAgain.remove(w);
                    if (stop) {
                        ClusterSignals.send("STOP", victim.pid());
                        stopped = f;
                    } else {
                        victim.destroyForcibly();
                    }
                    faults.add(f);
                    err.printf(Locale.ROOT, "[%6.1f s] fault %d: %s worker %d (%s, pid %d)%n", (f.at - t0) / 1e9, faults.size(),
                            stop ? "SIGSTOP" : "SIGKILL", w, f.address, f.pid);
                    nextFault += killEvery.toNanos();
                }
                observe(view, faults, listeningAgain, stop);
                LockSupport.parkNanos(POLL.toNanos()); // the poll's pace; the loop re-checks the schedule
            }
            if (stopped != null) {
                ClusterSignals.send("CONT", stopped.pid);
            }
            running.set(false);
        }
        return report(out, err, stats, faults, stop, hang);
    }

    /** The phase a request that started at {@code started} and ends now counts in. */
    private static PhaseStats phase(Map<Phase, PhaseStats> stats, long started, AtomicLong baselineStart, AtomicLong faultStart) {
        if (started < baselineStart.get()) {
            return stats.get(Phase.WARMUP);
        }
        return stats.get(System.nanoTime() < faultStart.get() ? Phase.BASELINE : Phase.FAULTS);
    }

    /** The frontend's placement epoch, or -1 when it cannot be read. */
    private static long epoch(FrontendWorkers view) {
        try {
            return view.read().epoch();
        } catch (IOException e) {
            return -1;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return -1;
        }
    }

    /**
     * Marks what each open fault has reached, from what the frontend lists (GET
     * /v1/epserve/workers): <em>listening</em>, the victim's process answers again (the
     * supervisor restarted it, or it was continued); <em>redundancy back</em>, once the victim was
     * seen down, every worker that holds experts is serving and either a new placement epoch
     * (without the victim) serves or the victim serves again; <em>serving again</em>, the victim
     * is serving with experts of the current placement after it was seen down.
     */
    private static void observe(FrontendWorkers view, List<Fault> faults, Map<Integer, Long> listeningAgain, boolean stop) {
        if (faults.isEmpty() || faults.getLast().done()) {
            return;
        }
        FrontendWorkers.Table now;
        try {
            now = view.read();
        } catch (IOException e) {
            return; // the next poll tries again
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
        }
        long t = System.nanoTime();
        boolean holdersServe = now.workers().values().stream().allMatch(w -> w.experts() == 0 || w.state().equals("serving"));
        for (Fault f : faults) {
            if (f.done()) {
                continue;
            }
            Long l = listeningAgain.get(f.worker);
            if (f.listening == 0 && !stop && l != null && l > f.at) {
                f.listening = l;
            }
            FrontendWorkers.Worker v = now.workers().get(f.address);
            boolean victimServes = v != null && v.serving();
            if (!victimServes) {
                f.sawDown = true;
            }
            if (f.sawDown && victimServes && f.serving == 0) {
                f.serving = t;
            }
            if (f.sawDown && f.restored == 0 && holdersServe && (now.epoch() > f.epochAtFault || victimServes)) {
                f.restored = t;
            }
        }
    }

    private int report(PrintStream out, PrintStream err, Map<Phase, PhaseStats> stats, List<Fault> faults, boolean stop, Duration hang) {
        PhaseStats base = stats.get(Phase.BASELINE);
        PhaseStats hit = stats.get(Phase.FAULTS);
        int failed = stats.values().stream().mapToInt(PhaseStats::failed).sum();
        int wrong = stats.values().stream().mapToInt(s -> s.wrong.get()).sum();
        out.printf(Locale.ROOT, "bench failover: %d clients, %d worker processes (%d kernel thread(s) each), prompt %d, %d tokens per "
                        + "request, greedy; %s every %s for %s%s, baseline %s%n", clients, workers, workerThreads, promptTokens, maxTokens,
                stop ? "SIGSTOP" : "SIGKILL", DurationConverter.format(killEvery), DurationConverter.format(duration),
                stop ? " (stopped for " + DurationConverter.format(hang) + ")" : "", DurationConverter.format(baseline));
        out.printf(Locale.ROOT, "requests: %d ok, failed requests: %d, wrong outputs: %d (warm-up %d, baseline %d, with faults %d)%n",
                stats.values().stream().mapToInt(s -> s.ok.get()).sum(), failed, wrong, stats.get(Phase.WARMUP).ok.get(), base.ok.get(),
                hit.ok.get());
        out.printf(Locale.ROOT, "  %-22s %10s %10s %10s %10s%n", "latency (ms)", "p50", "p99", "max", "requests");
        row(out, "end-to-end, baseline", base.e2e);
        row(out, "end-to-end, faults", hit.e2e);
        row(out, "TTFT, baseline", base.ttft);
        row(out, "TTFT, faults", hit.ttft);
        out.printf(Locale.ROOT, "  %-6s %-7s %-22s %14s %20s %18s%n", "fault", "worker", "address", "listening (ms)",
                "redundancy back (ms)", "serving again (ms)");
        for (int i = 0; i < faults.size(); i++) {
            Fault f = faults.get(i);
            out.printf(Locale.ROOT, "  %-6d %-7d %-22s %14s %20s %18s%n", i + 1, f.worker, f.address, since(f, f.listening),
                    since(f, f.restored), since(f, f.serving));
        }
        out.println("  (from the fault: listening = the process answers again, restarted by the supervisor or continued after "
                + "--stop-for; redundancy back = every worker holding experts serves, under a placement without the victim or "
                + "with it back; serving again = the victim serves experts again; - = not within the run)");
        out.flush();
        for (PhaseStats s : stats.values()) {
            s.failures.forEach((why, n) -> err.printf(Locale.ROOT, "  %6d failed: %s%n", n, why));
        }
        if (failed > 0 || wrong > 0) {
            err.println("epserve: bench failover: " + failed + " failed request(s), " + wrong + " wrong output(s)");
            return 1;
        }
        return 0;
    }

    private static String since(Fault f, long t) {
        return t == 0 ? "-" : Long.toString((t - f.at) / 1_000_000);
    }

    private static void row(PrintStream out, String label, Histogram h) {
        if (h.getTotalCount() == 0) {
            out.printf(Locale.ROOT, "  %-22s %10s %10s %10s %10d%n", label, "-", "-", "-", 0);
            return;
        }
        out.printf(Locale.ROOT, "  %-22s %10.1f %10.1f %10.1f %10d%n", label, h.getValueAtPercentile(50) / 1e3, h.getValueAtPercentile(99) / 1e3,
                h.getMaxValue() / 1e3, h.getTotalCount());
    }
}
