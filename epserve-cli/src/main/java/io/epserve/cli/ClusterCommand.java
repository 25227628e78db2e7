package io.epserve.cli;

import io.epserve.format.gguf.GgufModel;
import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.rpc.HostPort;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.ScalingPolicy;
import io.epserve.rpc.WorkerSecurity;
import io.epserve.rpc.WorkerSupervisor;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.tensor.DType;
import java.io.PrintStream;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code epserve cluster}: N expert worker processes on loopback, for local experiments. */
@Command(name = "cluster", mixinStandardHelpOptions = true,
        description = {"Start N expert worker processes on 127.0.0.1 (this JVM's java and class path), wait "
                + "until each listens, assign each its share of the model's experts under the placement "
                + "policy, print the addresses, the placement and what each worker maps, then keep them "
                + "running until interrupted (Ctrl-C stops them all). A worker that dies is started again on "
                + "its address after a backoff (doubling from 250 ms to 30 s) and the frontend assigns it "
                + "again; one that exits 0 (drained) is not. Point a frontend at them with the printed "
                + "--workers list.",
                "",
                "With --join FRONTEND:PORT the workers register with a running frontend's membership service "
                + "(serve --membership-listen) instead, and with --min-workers A --max-workers B the cluster "
                + "scales: it adds a worker when the expert layer is the bottleneck (the workers' mean busy "
                + "fraction, from the frontend's --frontend-metrics, at or above --scale-up-busy for "
                + "--scale-up-window) and retires one (SIGTERM: it drains, then exits 0) when every worker "
                + "stays at or below --scale-down-busy for --scale-down-window, with --scale-cooldown "
                + "between changes; never below A or above B."})
final class ClusterCommand implements Callable<Integer> {

    @Option(names = "--model", paramLabel = "DIR|FILE.gguf",
            description = "Hugging Face model directory. Default: the built-in demo model (written to the cache on first use).")
    Path model;

    @Option(names = "--demo", hidden = true, defaultValue = "standard", description = "Demo model size: standard or tiny (tests).")
    String demo;

    @Option(names = "--workers", paramLabel = "N", description = "Number of worker processes (a fixed pool: --min-workers N --max-workers N).")
    Integer workers;

    @Option(names = "--min-workers", paramLabel = "A", description = "Fewest worker processes when scaling (started at first). Default 1.")
    Integer minWorkers;

    @Option(names = "--max-workers", paramLabel = "B", description = "Most worker processes when scaling. Default: --min-workers.")
    Integer maxWorkers;

    @Option(names = "--join", paramLabel = "FRONTEND:PORT",
            description = "Every worker (also restarted and added ones) registers with the frontend's membership service at this "
                    + "address (serve --membership-listen), which assigns its experts; the cluster then assigns nothing itself.")
    String join;

    @Option(names = "--frontend-metrics", paramLabel = "URL",
            description = "The frontend's /metrics (e.g. http://127.0.0.1:8080/metrics, or its --metrics-listen address), "
                    + "where scaling reads how long each worker computed. Required with --max-workers > --min-workers.")
    String frontendMetrics;

    @Option(names = "--scale-up-busy", paramLabel = "F", defaultValue = "" + ScalingPolicy.Config.DEFAULT_SCALE_UP_BUSY,
            description = "Mean busy fraction of the workers (compute time per wall time) at or above which a worker is added "
                    + "(default ${DEFAULT-VALUE}).")
    double scaleUpBusy;

    @Option(names = "--scale-up-window", paramLabel = "DURATION", defaultValue = "10s", converter = DurationConverter.class,
            description = "How long the workers must stay that busy (default ${DEFAULT-VALUE}).")
    Duration scaleUpWindow;

    @Option(names = "--scale-down-busy", paramLabel = "F", defaultValue = "" + ScalingPolicy.Config.DEFAULT_SCALE_DOWN_BUSY,
            description = "Busy fraction at or below which a worker is idle (default ${DEFAULT-VALUE}).")
    double scaleDownBusy;

    @Option(names = "--scale-down-window", paramLabel = "DURATION", defaultValue = "60s", converter = DurationConverter.class,
            description = "How long every worker must stay idle before one is retired (default ${DEFAULT-VALUE}).")
    Duration scaleDownWindow;

    @Option(names = "--scale-cooldown", paramLabel = "DURATION", defaultValue = "30s", converter = DurationConverter.class,
            description = "Quiet time after each change (default ${DEFAULT-VALUE}).")
    Duration scaleCooldown;

    @Option(names = "--scale-interval", paramLabel = "DURATION", defaultValue = "1s", converter = DurationConverter.class,
            description = "How often the load is measured (default ${DEFAULT-VALUE}).")
    Duration scaleInterval;

    @Option(names = "--drain-timeout", paramLabel = "DURATION", defaultValue = "60s", converter = DurationConverter.class,
            description = "A retired worker still running after this long is killed (default ${DEFAULT-VALUE}).")
    Duration drainTimeout;

    @Option(names = "--policy", defaultValue = "contiguous", paramLabel = "POLICY",
            description = "Expert placement: contiguous (worker w holds experts [w·E/N, (w+1)·E/N)) or round-robin (e mod N), or replicated (every worker holds every expert). "
                    + "Default ${DEFAULT-VALUE}.")
    String policy;

    @Option(names = "--base-port", defaultValue = "0", paramLabel = "P",
            description = "Worker i listens on P+i; 0 (default) picks free ports.")
    int basePort;

    @Option(names = "--expert-dtype", paramLabel = "DTYPE",
            description = "The workers hold the routed experts in this dtype (their --expert-dtype; frontends give the same). Default: as stored.")
    String expertDtype;

    @Mixin
    WorkerSecurityOptions security;

    @Option(names = "--no-restart", description = "Stop the cluster when a worker dies instead of starting it again.")
    boolean noRestart;

    @Option(names = "--worker-threads", paramLabel = "T",
            description = "Kernel threads per worker (-Depserve.threads). Default: processors / N, at least 1.")
    Integer workerThreads;

    static String describe(WorkerSupervisor.Event e) {
        return switch (e) {
            case WorkerSupervisor.Event.Died d -> String.format(Locale.ROOT, "worker %d (%s, pid %d) died with code %d; restarting in %d ms",
                    d.worker(), d.address(), d.pid(), d.exitCode(), d.delay().toMillis());
            case WorkerSupervisor.Event.Restarted r -> String.format(Locale.ROOT,
                    "worker %d (%s) restarted as pid %d, listening %d ms after it died (failure %d in a row)", r.worker(), r.address(),
                    r.pid(), r.downtime().toMillis(), r.attempt());
            case WorkerSupervisor.Event.RestartFailed f -> String.format(Locale.ROOT, "worker %d (%s) did not restart: %s; again in %d ms",
                    f.worker(), f.address(), f.reason(), f.delay().toMillis());
            case WorkerSupervisor.Event.Left l -> String.format(Locale.ROOT, "worker %d (%s, pid %d) exited 0 (drained); not restarted",
                    l.worker(), l.address(), l.pid());
            case WorkerSupervisor.Event.Added a -> String.format(Locale.ROOT, "worker %d (%s) added as pid %d, listening after %d ms",
                    a.worker(), a.address(), a.pid(), a.startup().toMillis());
            case WorkerSupervisor.Event.Retired r -> String.format(Locale.ROOT, "worker %d (%s, pid %d) retired: %s %d ms after SIGTERM",
                    r.worker(), r.address(), r.pid(), r.exitCode() == 0 ? "drained and exited 0" : "exited with code " + r.exitCode(),
                    r.drain().toMillis());
        };
    }

    /** --model (checked) as an absolute path, else the demo model of size {@code demo}, written to the cache on first use. */
    static Path modelDir(Path model, String demo) {
        if (model == null) {
            return DemoModel.ensure(ModelOptions.demoSpec(demo), DemoModel.defaultCacheDir(), TerminalProgress.forStderr()).toAbsolutePath();
        }
        if (!Files.isDirectory(model) && !GgufModel.isGguf(model)) {
            throw new Main.UsageError("--model " + model + ": no such directory or .gguf file");
        }
        return model.toAbsolutePath().normalize();
    }

    /** The pool's bounds and thresholds from the options, checked once. */
    ScalingPolicy.Config scaling() {
        if (workers != null && (minWorkers != null || maxWorkers != null)) {
            throw new Main.UsageError("--workers N is a fixed pool; give it or --min-workers/--max-workers, not both");
        }
        if (workers == null && minWorkers == null && maxWorkers == null) {
            throw new Main.UsageError("give --workers N, or --min-workers A --max-workers B");
        }
        int min = workers != null ? workers : minWorkers != null ? minWorkers : 1;
        int max = workers != null ? workers : maxWorkers != null ? maxWorkers : min;
        if (min < 1) {
            throw new Main.UsageError((workers != null ? "--workers" : "--min-workers") + " must be at least 1, got " + min);
        }
        if (max < min) {
            throw new Main.UsageError("--max-workers " + max + " is below --min-workers " + min);
        }
        for (Duration d : List.of(scaleInterval, drainTimeout)) {
            if (d.isZero()) {
                throw new Main.UsageError("--scale-interval and --drain-timeout must be positive");
            }
        }
        ScalingPolicy.Config c;
        try {
            c = new ScalingPolicy.Config(min, max, scaleUpBusy, scaleUpWindow, scaleDownBusy, scaleDownWindow, scaleCooldown);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage().replace("scale-up busy fraction", "--scale-up-busy")
                    .replace("scale-down busy fraction", "--scale-down-busy"));
        }
        if (c.scales()) {
            if (join == null) {
                throw new Main.UsageError("--max-workers > --min-workers needs --join FRONTEND:PORT: a worker added later must "
                        + "register with the running frontend");
            }
            if (frontendMetrics == null) {
                throw new Main.UsageError("--max-workers > --min-workers needs --frontend-metrics URL (the frontend's /metrics), "
                        + "where the workers' busy time is read");
            }
        }
        return c;
    }

    @Override
    public Integer call() throws Exception {
        ScalingPolicy.Config pool = scaling();
        int initial = pool.minWorkers();
        if (basePort < 0 || basePort + pool.maxWorkers() - 1 > 65535) {
            throw new Main.UsageError("--base-port " + basePort + ": ports " + basePort + ".." + (basePort + pool.maxWorkers() - 1)
                    + " do not fit");
        }
        if (join != null) {
            try {
                HostPort.parse(join, "--join");
            } catch (IllegalArgumentException e) {
                throw new Main.UsageError(e.getMessage());
            }
        }
        URI metricsUri = null;
        if (frontendMetrics != null) {
            try {
                metricsUri = URI.create(frontendMetrics);
            } catch (IllegalArgumentException e) {
                throw new Main.UsageError("--frontend-metrics '" + frontendMetrics + "' is not a URL: " + e.getMessage());
            }
            if (!"http".equals(metricsUri.getScheme()) && !"https".equals(metricsUri.getScheme())) {
                throw new Main.UsageError("--frontend-metrics must be an http:// or https:// URL, got '" + frontendMetrics + "'");
            }
        }
        ExpertPlacement.Policy placementPolicy = ModelOptions.parsePolicy(policy);
        int threads = workerThreads != null ? workerThreads : Math.max(1, Runtime.getRuntime().availableProcessors() / initial);
        if (threads < 1) {
            throw new Main.UsageError("--worker-threads must be at least 1, got " + threads);
        }
        if (noRestart && pool.scales()) {
            throw new Main.UsageError("--no-restart stops the cluster at the first exit: it cannot scale");
        }
        Path dir = modelDir(model, demo);
        ModelConfig cfg;
        try (Checkpoint header = Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR)) {
            cfg = ModelConfig.from(header.config());
        }

        DType dtype;
        try {
            dtype = expertDtype == null ? null : DType.parse(expertDtype);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--expert-dtype: " + e.getMessage());
        }
        WorkerSecurity workerSecurity = security.security();

        PrintStream out = System.out;
        List<String> args = new ArrayList<>(List.of("worker", "--model", dir.toString()));
        if (dtype != null) {
            args.addAll(List.of("--expert-dtype", dtype.label()));
        }
        if (join != null) {
            args.addAll(List.of("--join", join));
        }
        args.addAll(security.workerArgs());
        LocalWorkerProcesses.CommandLine command = LocalWorkerProcesses.sameJvm(Main.class.getName(),
                List.of("-Depserve.threads=" + threads), args);
        LocalWorkerProcesses procs = LocalWorkerProcesses.start(initial, "127.0.0.1", basePort, command, System.err,
                LocalWorkerProcesses.DEFAULT_START_TIMEOUT);
        AtomicBoolean interrupted = new AtomicBoolean();
        AtomicReference<WorkerSupervisor> supervising = new AtomicReference<>();
        AtomicReference<ClusterScaler> scaler = new AtomicReference<>();
        Thread stopper = new Thread(() -> {
            interrupted.set(true);
            ClusterScaler sc = scaler.get();
            if (sc != null) {
                sc.close(); // first, or it would add workers while they stop
            }
            WorkerSupervisor s = supervising.get();
            if (s != null) {
                s.close(); // then, or it would restart the workers that close() stops
            }
            procs.close();
        }, "epserve-cluster-shutdown");
        Runtime.getRuntime().addShutdownHook(stopper);
        try {
            out.printf("epserve cluster: %d worker(s) on loopback, %d kernel thread(s) each, model %s%n", initial, threads, dir);
            if (pool.scales()) {
                out.printf(Locale.ROOT, "  scaling between %d and %d workers: up at mean busy >= %.2f for %s, down at busy <= %.2f for %s, "
                                + "cooldown %s, load from %s%n", pool.minWorkers(), pool.maxWorkers(), scaleUpBusy,
                        DurationConverter.format(scaleUpWindow), scaleDownBusy, DurationConverter.format(scaleDownWindow),
                        DurationConverter.format(scaleCooldown), metricsUri);
            }
            for (int i = 0; i < initial; i++) {
                out.printf("  worker %d: %s (pid %d)%n", i, procs.address(i), procs.process(i).pid());
            }
            if (join == null) {
                ExpertPlacement placement = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), procs.addresses(), placementPolicy, 1);
                placement.describe().forEach(out::println);
                // assigned once so the workers map their experts now; closing releases them for the frontend
                try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, placement, GrpcExpertDispatcher.Config.defaults()
                        .withExpertDType(dtype).withSecurity(workerSecurity)).start()) {
                    for (int i = 0; i < initial; i++) {
                        InfoResponse info = d.info(i);
                        out.printf(Locale.ROOT, "  worker %d assigned: %d experts, %.1f MiB mapped, %.1f MiB resident%n", i,
                                info.getExpertCount(), info.getMappedBytes() / 1048576.0, info.getResidentBytes() / 1048576.0);
                    }
                }
            } else {
                out.println("  the workers join the frontend at " + join + ", which places their experts");
            }
            out.println("--workers " + String.join(",", procs.addresses()) + (dtype != null ? " --expert-dtype " + dtype.label() : ""));
            out.println("running; Ctrl-C stops the workers");
            out.flush();
            if (noRestart) {
                CompletableFuture<?>[] exits = new CompletableFuture<?>[initial];
                for (int i = 0; i < initial; i++) {
                    exits[i] = procs.process(i).onExit();
                }
                CompletableFuture.anyOf(exits).join();
                for (int i = 0; i < initial && !interrupted.get(); i++) {
                    if (!procs.process(i).isAlive()) {
                        System.err.println("epserve: error: worker " + i + " (" + procs.address(i) + ") exited with code "
                                + procs.process(i).exitValue() + "; stopping the cluster");
                    }
                }
                return 1;
            }
            Set<Integer> left = ConcurrentHashMap.newKeySet();
            CompletableFuture<Void> allLeft = new CompletableFuture<>();
            try (WorkerSupervisor supervisor = WorkerSupervisor.start(procs, WorkerSupervisor.Backoff.DEFAULT, e -> {
                System.err.println("epserve cluster: " + describe(e));
                ClusterScaler sc = scaler.get();
                if (sc != null) {
                    sc.onEvent(e);
                }
                if (e instanceof WorkerSupervisor.Event.Left) {
                    left.add(e.worker());
                    if (left.containsAll(procs.active())) {
                        allLeft.complete(null);
                    }
                }
            })) {
                supervising.set(supervisor);
                if (pool.scales()) {
                    scaler.set(new ClusterScaler(new ScalingPolicy(pool), supervisor, procs, metricsUri, drainTimeout, System.err)
                            .start(scaleInterval));
                }
                try {
                    allLeft.join();
                } finally {
                    ClusterScaler sc = scaler.get();
                    if (sc != null) {
                        sc.close();
                    }
                }
            }
            System.err.println("epserve cluster: every worker left");
            return 0;
        } finally {
            procs.close();
            try {
                Runtime.getRuntime().removeShutdownHook(stopper);
            } catch (IllegalStateException shuttingDown) {
                // the hook is running (Ctrl-C): it closes the workers
            }
        }
    }
}
