package io.epserve.cli;

import io.epserve.format.gguf.GgufModel;
import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.v1.InfoResponse;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code epserve cluster}: N expert worker processes on loopback, for local experiments. */
@Command(name = "cluster", mixinStandardHelpOptions = true,
        description = {"Start N expert worker processes on 127.0.0.1 (this JVM's java and class path), wait",
                "until each listens, assign each its share of the model's experts under the placement",
                "policy, print the addresses, the placement and what each worker maps, then keep them",
                "running until interrupted (Ctrl-C stops them all). Point a frontend at them with the",
                "printed --workers list."})
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

    @Option(names = "--worker-threads", paramLabel = "T",
            description = "Kernel threads per worker (-Depserve.threads). Default: processors / N, at least 1.")
    Integer workerThreads;

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

        PrintStream out = System.out;
        LocalWorkerProcesses.CommandLine command = LocalWorkerProcesses.sameJvm(Main.class.getName(),
                List.of("-Depserve.threads=" + threads), List.of("worker", "--model", dir.toString()));
        LocalWorkerProcesses procs = LocalWorkerProcesses.start(workers, "127.0.0.1", basePort, command, System.err,
                LocalWorkerProcesses.DEFAULT_START_TIMEOUT);
        AtomicBoolean interrupted = new AtomicBoolean();
        Thread stopper = new Thread(() -> {
            interrupted.set(true);
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
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, placement, GrpcExpertDispatcher.Config.defaults()).start()) {
                for (int i = 0; i < workers; i++) {
                    InfoResponse info = d.info(i);
                    out.printf(Locale.ROOT, "  worker %d assigned: %d experts, %.1f MiB mapped, %.1f MiB resident%n", i, info.getExpertCount(),
                            info.getMappedBytes() / 1048576.0, info.getResidentBytes() / 1048576.0);
                }
            }
            out.println("--workers " + String.join(",", procs.addresses()));
            out.println("running; Ctrl-C stops the workers");
            out.flush();
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
