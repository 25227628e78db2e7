package io.epserve.cli;

import io.epserve.format.gguf.GgufModel;
import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.WorkerSecurity;
import io.epserve.rpc.WorkerSupervisor;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.tensor.DType;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
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
                + "--workers list."})
final class ClusterCommand implements Callable<Integer> {

    @Option(names = "--model", paramLabel = "DIR|FILE.gguf",
            description = "Hugging Face model directory. Default: the built-in demo model (written to the cache on first use).")
    Path model;

    @Option(names = "--demo", hidden = true, defaultValue = "standard", description = "Demo model size: standard or tiny (tests).")
    String demo;

    @Option(names = "--workers", required = true, paramLabel = "N", description = "Number of worker processes.")
    int workers;

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
        };
    }

    @Override
    public Integer call() throws Exception {
        if (workers < 1) {
            throw new Main.UsageError("--workers must be at least 1, got " + workers);
        }
        if (basePort < 0 || basePort + workers - 1 > 65535) {
            throw new Main.UsageError("--base-port " + basePort + ": ports " + basePort + ".." + (basePort + workers - 1) + " do not fit");
        }
        ExpertPlacement.Policy placementPolicy = ModelOptions.parsePolicy(policy);
        int threads = workerThreads != null ? workerThreads : Math.max(1, Runtime.getRuntime().availableProcessors() / workers);
        if (threads < 1) {
            throw new Main.UsageError("--worker-threads must be at least 1, got " + threads);
        }
        Path dir;
        if (model != null) {
            if (!Files.isDirectory(model) && !GgufModel.isGguf(model)) {
                throw new Main.UsageError("--model " + model + ": no such directory or .gguf file");
            }
            dir = model.toAbsolutePath().normalize();
        } else {
            dir = DemoModel.ensure(ModelOptions.demoSpec(demo), DemoModel.defaultCacheDir(), TerminalProgress.forStderr()).toAbsolutePath();
        }
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
        args.addAll(security.workerArgs());
        LocalWorkerProcesses.CommandLine command = LocalWorkerProcesses.sameJvm(Main.class.getName(),
                List.of("-Depserve.threads=" + threads), args);
        LocalWorkerProcesses procs = LocalWorkerProcesses.start(workers, "127.0.0.1", basePort, command, System.err,
                LocalWorkerProcesses.DEFAULT_START_TIMEOUT);
        AtomicBoolean interrupted = new AtomicBoolean();
        AtomicReference<WorkerSupervisor> supervising = new AtomicReference<>();
        Thread stopper = new Thread(() -> {
            interrupted.set(true);
            WorkerSupervisor s = supervising.get();
            if (s != null) {
                s.close(); // first, or it would restart the workers that close() stops
            }
            procs.close();
        }, "epserve-cluster-shutdown");
        Runtime.getRuntime().addShutdownHook(stopper);
        try {
            out.printf("epserve cluster: %d worker(s) on loopback, %d kernel thread(s) each, model %s%n", workers, threads, dir);
            for (int i = 0; i < workers; i++) {
                out.printf("  worker %d: %s (pid %d)%n", i, procs.address(i), procs.process(i).pid());
            }
            ExpertPlacement placement = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), procs.addresses(), placementPolicy, 1);
            placement.describe().forEach(out::println);
            // assigned once so the workers map their experts now; closing releases them for the frontend
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, placement, GrpcExpertDispatcher.Config.defaults()
                    .withExpertDType(dtype).withSecurity(workerSecurity)).start()) {
                for (int i = 0; i < workers; i++) {
                    InfoResponse info = d.info(i);
                    out.printf(Locale.ROOT, "  worker %d assigned: %d experts, %.1f MiB mapped, %.1f MiB resident%n", i, info.getExpertCount(),
                            info.getMappedBytes() / 1048576.0, info.getResidentBytes() / 1048576.0);
                }
            }
            out.println("--workers " + String.join(",", procs.addresses()) + (dtype != null ? " --expert-dtype " + dtype.label() : ""));
            out.println("running; Ctrl-C stops the workers");
            out.flush();
            if (noRestart) {
                CompletableFuture<?>[] exits = new CompletableFuture<?>[workers];
                for (int i = 0; i < workers; i++) {
                    exits[i] = procs.process(i).onExit();
                }
                CompletableFuture.anyOf(exits).join();
                for (int i = 0; i < workers && !interrupted.get(); i++) {
                    if (!procs.process(i).isAlive()) {
                        System.err.println("epserve: error: worker " + i + " (" + procs.address(i) + ") exited with code "
                                + procs.process(i).exitValue() + "; stopping the cluster");
                    }
                }
                return 1;
            }
            CountDownLatch allLeft = new CountDownLatch(workers);
            try (WorkerSupervisor supervisor = WorkerSupervisor.start(procs, WorkerSupervisor.Backoff.DEFAULT, e -> {
                System.err.println("epserve cluster: " + describe(e));
                if (e instanceof WorkerSupervisor.Event.Left) {
                    allLeft.countDown();
                }
            })) {
                supervising.set(supervisor);
                allLeft.await();
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
