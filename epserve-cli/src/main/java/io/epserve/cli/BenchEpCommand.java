package io.epserve.cli;

import io.epserve.model.Generator;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.model.sampling.Sampler;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.DispatchStats;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.rpc.HostPort;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.rpc.Transport;
import java.io.PrintStream;
import java.math.BigDecimal;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.model.ModelWeights;
import io.epserve.model.ModelConfig;

/**
 * {@code epserve bench ep}: what expert parallelism costs and buys on this machine. The same
 * model runs with its experts in this process, then on 2 worker processes on loopback over gRPC,
 * each with two-batch overlap off and on; for each: prefill and single-sequence decode tokens/s,
 * batched decode tokens/s (B sequences a step, where overlap can hide dispatch), and bytes per
 * token on the wire.
 */
@Command(name = "ep", mixinStandardHelpOptions = true,
        description = {"Compare single-process experts with 2 expert worker processes on this host (--transports: gRPC on loopback, shared memory), "
                + "with and without two-batch overlap: prefill, decode and batched-decode tokens/s, and the "
                + "bytes per token that cross the wire. With --workers, the running workers at those addresses "
                + "(e.g. on other hosts) instead of --ep-workers processes started on loopback."})
final class BenchEpCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Mixin
    BenchShape shape;

    @Option(names = "--batch", defaultValue = "8", description = "Sequences per step in the batched decode (default ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--ep-workers", defaultValue = "2", description = "Worker processes (default ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--warmup-seconds", defaultValue = "30",
            description = {"Unmeasured runs, repeated for at least this long, before the first configuration "
                    + "of the single process and of the workers is measured; every configuration also gets one "
                    + "warm-up run (default ${DEFAULT-VALUE}). Three JVMs on few cores take tens of seconds "
                    + "to finish compiling the per-call code (-XX:+PrintCompilation shows it): without this the "
                    + "first worker configuration measures the JIT."})
    double warmupSeconds;

    @Option(names = "--transports", split = ",", paramLabel = "KIND",
            description = {"Transports to measure the workers over, one after the other on the same worker processes "
                    + "(e.g. grpc,shm: both in one run); default: --transport. auto and shm use shared memory with "
                    + "workers on this host (see --transport)."})
    List<String> transports;

    @Option(names = "--worker-threads", defaultValue = "1",
            description = "Kernel threads per worker process (default ${DEFAULT-VALUE}: 2 workers × 1 thread = the 2 cores).")
    int workerThreads;

    /**
     * Medians of the runs; for remote experts also the wire bytes per token, and per call (mean
     * over the workers and the decode calls of one more pass) the worker's compute time and the
     * rest of the round trip (both stacks and the network).
     */
    record Figures(double prefill, double decode, double batchDecode, double[] batchRuns, double bytesPerToken, CallSplit decodeCalls,
                   CallSplit batchCalls) {}

    /** Per call, mean over the workers that were called: the worker's compute time and the rest of the round trip (µs). */
    record CallSplit(double computeMicros, double overheadMicros) {
        static final CallSplit NONE = new CallSplit(Double.NaN, Double.NaN);

        static CallSplit between(DispatchStats before, DispatchStats after) {
            double compute = 0;
            double overhead = 0;
            int used = 0;
            for (int w = 0; w < after.workers().size(); w++) {
                DispatchStats.Worker a = after.workers().get(w);
                DispatchStats.Worker b = before.workers().get(w);
                long calls = a.calls() - b.calls();
                if (calls > 0) {
                    compute += (a.computeNanos() - b.computeNanos()) / 1e3 / calls;
                    overhead += ((a.roundTripNanos() - b.roundTripNanos()) - (a.computeNanos() - b.computeNanos())) / 1e3 / calls;
                    used++;
                }
            }
            return used == 0 ? NONE : new CallSplit(compute / used, overhead / used);
        }
    }

    @Override
    public Integer call() throws Exception {
        shape.validate();
        if (batch < 2 || workers < 1 || workerThreads < 1 || !(warmupSeconds >= 0)) {
            throw new Main.UsageError("--batch >= 2, --ep-workers >= 1, --worker-threads >= 1 and --warmup-seconds >= 0 are required");
        }
        List<Transport> kinds = new ArrayList<>();
        for (String k : transports == null ? List.of(model.transport().label()) : transports) {
            try {
                kinds.add(Transport.parse(k, "--transports"));
            } catch (IllegalArgumentException e) {
                throw new Main.UsageError(e.getMessage());
            }
        }
        TerminalProgress progress = TerminalProgress.forStderr();
        Path dir = model.resolveModelDir(progress).toAbsolutePath().normalize();
        PrintStream out = System.out;
        List<String[]> rows = new ArrayList<>();
        List<String> callLines = new ArrayList<>();
        try (LoadedModel single = LoadedModel.load(dir, LoadedModel.Options.defaults().withValidate(!model.noValidate)
                .withProgress(progress))) {
            for (boolean overlap : new boolean[] {false, true}) {
                Figures f = measure(single, overlap, null, overlap ? 0 : warmupSeconds);
                rows.add(row("single process", overlap, f));
                callLines.add(runsLine("single process", overlap, f));
            }
        }
        List<String> remote = model.workers == null ? List.of() : List.copyOf(model.workers);
        if (!remote.isEmpty()) {
            for (String a : remote) {
                HostPort.parse(a, "--workers");
            }
            for (Transport k : kinds) {
                measureWorkers(dir, remote, remote.size() + " workers, remote" + (transports == null ? "" : " " + k.label()), k, rows,
                        callLines);
            }
        } else {
            try (LocalWorkerProcesses procs = LocalWorkerProcesses.start(workers, "127.0.0.1", 0,
                    LocalWorkerProcesses.sameJvm(Main.class.getName(), List.of("-Depserve.threads=" + workerThreads),
                            workerArgs(dir)),
                    System.err, LocalWorkerProcesses.DEFAULT_START_TIMEOUT)) {
                for (Transport k : kinds) {
                    measureWorkers(dir, procs.addresses(), workers + " workers, " + (transports == null ? "loopback" : k.label()), k,
                            rows, callLines);
                }
            }
        }
        int used = remote.isEmpty() ? workers : remote.size();
        out.printf(Locale.ROOT, "model: %s; prompt %d, decode %d tokens, batched decode %d sequences; median of %d runs "
                + "after %s s of warm-up; placement %s, %d kernel thread(s) per worker%n", dir, shape.promptTokens, shape.genTokens, batch,
                shape.runs, BigDecimal.valueOf(warmupSeconds).stripTrailingZeros().toPlainString(),
                model.placementPolicy().name().toLowerCase(Locale.ROOT), workerThreads);
        out.printf(Locale.ROOT, "%-22s %-8s %12s %12s %16s %16s%n", "experts", "overlap", "prefill t/s", "decode t/s",
                "batch decode t/s", "wire bytes/token");
        for (String[] r : rows) {
            out.printf(Locale.ROOT, "%-22s %-8s %12s %12s %16s %16s%n", (Object[]) r);
        }
        for (String line : callLines) {
            out.println(line);
        }
        double base = Double.parseDouble(rows.get(0)[3]);
        for (int i = 2; i < rows.size(); i += 2) {
            out.printf(Locale.ROOT, "decode with %d worker processes%s / single process: %.2f%n", used,
                    transports == null ? "" : " (" + kinds.get(i / 2 - 1).label() + ")", Double.parseDouble(rows.get(i)[3]) / base);
        }
        // Every column against the single process without overlap, for each overlap setting of
        // the workers (one sequence's decode is latency-bound; a batch's is throughput-bound).
        for (int i = 2; i < rows.size(); i++) {
            String[] ep = rows.get(i);
            out.printf(Locale.ROOT, "%d worker processes%s, overlap %s / single process: prefill %.2f, decode %.2f, batched decode (%d sequences) %.2f%n",
                    used, transports == null ? "" : " (" + kinds.get(i / 2 - 1).label() + ")", ep[1], ratio(ep[2], rows.get(0)[2]), ratio(ep[3], rows.get(0)[3]), batch, ratio(ep[4], rows.get(0)[4]));
        }
        return 0;
    }

    /** Overlap off and on through the workers at {@code addresses}: one row each, and the per-call split. */
    private void measureWorkers(Path dir, List<String> addresses, String label, Transport transport, List<String[]> rows,
                                List<String> callLines) {
        // with one transport the lines keep their old form ("2 workers, overlap off: ..."), which scripts read
        String who = transports == null ? addresses.size() + " workers" : label;
        LoadedModel.Dispatchers remote = new LoadedModel.Dispatchers() {
            @Override
            public ExpertDispatcher create(Path d, ModelConfig cfg, ModelWeights w) {
                return GrpcExpertDispatcher.connect(d, cfg.moeShape(), addresses, model.placementPolicy(),
                        GrpcExpertDispatcher.Config.defaults().withDeadline(Duration.ofSeconds(60))
                                .withSecurity(model.workerSecurity.security()).withTransport(transport));
            }

            @Override
            public boolean local() {
                return false;
            }
        };
        try (LoadedModel ep = LoadedModel.load(dir, LoadedModel.Options.defaults().withValidate(false).withDispatchers(remote))) {
            for (boolean overlap : new boolean[] {false, true}) {
                GrpcExpertDispatcher grpc = (GrpcExpertDispatcher) ep.dispatcher();
                Figures f = measure(ep, overlap, grpc, overlap ? 0 : warmupSeconds);
                rows.add(row(label, overlap, f));
                GrpcExpertDispatcher.RingUse ring = grpc.ringUse();
                callLines.add(String.format(Locale.ROOT, "%s, overlap %s: %d of %d workers on a shared-memory ring, %d of %d calls over one",
                        label, overlap ? "on" : "off", ring.workersOnRing(), ring.workers(), ring.calls(), callCount(grpc.stats())));
                callLines.add(runsLine(label, overlap, f));
                callLines.add(String.format(Locale.ROOT, "%s, overlap %s: per call %.0f µs computing, %.0f µs on the way "
                        + "(round trip minus compute; mean over workers and over the calls of one --gen-tokens decode)", who, overlap ? "on" : "off",
                        f.decodeCalls().computeMicros(), f.decodeCalls().overheadMicros()));
                callLines.add(String.format(Locale.ROOT, "%s, overlap %s, batched decode (%d sequences): per call %.0f µs computing, "
                        + "%.0f µs on the way (mean over workers and over the calls of the measured steps)", who, overlap ? "on" : "off", batch,
                        f.batchCalls().computeMicros(), f.batchCalls().overheadMicros()));
            }
        }
    }

    private static String runsLine(String what, boolean overlap, Figures f) {
        return String.format(Locale.ROOT, "%s, overlap %s: batched decode t/s per run %s", what, overlap ? "on" : "off",
                Arrays.stream(f.batchRuns()).mapToObj(x -> String.format(Locale.ROOT, "%.1f", x)).toList());
    }

    private static double ratio(String a, String b) {
        return Double.parseDouble(a) / Double.parseDouble(b);
    }

    private static String[] row(String what, boolean overlap, Figures f) {
        return new String[] {what, overlap ? "on" : "off", String.format(Locale.ROOT, "%.1f", f.prefill()),
                String.format(Locale.ROOT, "%.1f", f.decode()), String.format(Locale.ROOT, "%.1f", f.batchDecode()),
                Double.isNaN(f.bytesPerToken()) ? "-" : String.format(Locale.ROOT, "%.0f", f.bytesPerToken())};
    }

    /**
     * Warm-up (one run, then more until {@code warmupSeconds} have passed), then {@code --runs}
     * measured runs; a run is one prompt + decode and one batched decode.
     */
    /** The worker processes serve the benchmark's model, with the frontend's security settings if any. */
    private List<String> workerArgs(Path dir) {
        List<String> args = new ArrayList<>(List.of("worker", "--model", dir.toString()));
        args.addAll(model.workerSecurity.workerArgs());
        return args;
    }

    private Figures measure(LoadedModel m, boolean overlap, GrpcExpertDispatcher grpc, double warmupSeconds) {
        MoeTransformer t = m.transformer();
        t.setOverlap(overlap);
        int vocab = m.config().vocabSize();
        int[] prompt = shape.prompt(vocab);
        long warmupEnd = System.nanoTime() + (long) Math.min(warmupSeconds * 1e9, 86_400e9); // a day at most: no overflow
        do {
            Generator.generate(t, prompt, shape.genTokens, SamplingParams.GREEDY, true, Set.of(), x -> { });
            batchDecode(t, vocab, grpc, null);
        } while (System.nanoTime() - warmupEnd < 0);
        double[] prefill = new double[shape.runs];
        double[] decode = new double[shape.runs];
        double[] batched = new double[shape.runs];
        long bytes = 0;
        long tokens = 0;
        DispatchStats[] batchStats = new DispatchStats[2];
        for (int i = 0; i < shape.runs; i++) {
            DispatchStats before = grpc == null ? null : grpc.stats();
            Generator.Result r = Generator.generate(t, prompt, shape.genTokens, SamplingParams.GREEDY, true, Set.of(), x -> { });
            if (grpc != null) {
                bytes += wireBytes(grpc.stats()) - wireBytes(before);
                tokens += prompt.length + r.decodeSteps();
            }
            prefill[i] = r.prefillTokensPerSecond();
            decode[i] = r.decodeTokensPerSecond();
            batched[i] = batchDecode(t, vocab, grpc, grpc != null && i == shape.runs - 1 ? batchStats : null);
        }
        CallSplit decodeCalls = CallSplit.NONE;
        if (grpc != null) {
            // one more pass, decode calls only (a prompt's calls are far longer and would dominate the means)
            KvCache cache = t.newCache(prompt.length + shape.genTokens);
            float[] logits = t.forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
            DispatchStats before = grpc.stats();
            for (int i = 0; i < shape.genTokens; i++) {
                int next = Sampler.argmax(logits, 0, vocab);
                logits = t.forward(cache, new int[] {next}, 1, false, RoutingListener.NONE);
            }
            decodeCalls = CallSplit.between(before, grpc.stats());
        }
        t.setOverlap(false);
        return new Figures(BenchCommand.median(prefill), BenchCommand.median(decode), BenchCommand.median(batched), batched.clone(),
                grpc == null ? Double.NaN : (double) bytes / tokens, decodeCalls,
                grpc == null ? CallSplit.NONE : CallSplit.between(batchStats[0], batchStats[1]));
    }

    private static long callCount(DispatchStats s) {
        long c = 0;
        for (DispatchStats.Worker w : s.workers()) {
            c += w.calls();
        }
        return c;
    }

    private static long wireBytes(DispatchStats s) {
        long b = 0;
        for (DispatchStats.Worker w : s.workers()) {
            b += w.bytesSent() + w.bytesReceived();
        }
        return b;
    }

    /**
     * B sequences with a short prompt each, then --gen-tokens decode steps of all B at once; tokens/s of those steps.
     * With {@code stats}, the dispatcher's statistics before and after the timed steps go to stats[0] and stats[1].
     */
    private double batchDecode(MoeTransformer t, int vocab, GrpcExpertDispatcher grpc, DispatchStats[] stats) {
        SplittableRandom r = new SplittableRandom(7);
        List<KvCache> caches = new ArrayList<>();
        List<MoeTransformer.SequenceChunk> prefill = new ArrayList<>();
        for (int s = 0; s < batch; s++) {
            KvCache c = t.newCache(16 + shape.genTokens);
            caches.add(c);
            prefill.add(new MoeTransformer.SequenceChunk(c, r.ints(16, 0, vocab).toArray(), 0, 16, MoeTransformer.Logits.NONE));
        }
        t.step(prefill, RoutingListener.NONE);
        if (stats != null) {
            stats[0] = grpc.stats();
        }
        long t0 = System.nanoTime();
        for (int step = 0; step < shape.genTokens; step++) {
            List<MoeTransformer.SequenceChunk> chunks = new ArrayList<>();
            for (int s = 0; s < batch; s++) {
                chunks.add(new MoeTransformer.SequenceChunk(caches.get(s), new int[] {r.nextInt(vocab)}, 0, 1,
                        MoeTransformer.Logits.LAST));
            }
            t.step(chunks, RoutingListener.NONE);
        }
        long elapsed = System.nanoTime() - t0;
        if (stats != null) {
            stats[1] = grpc.stats();
        }
        return (double) batch * shape.genTokens * 1e9 / elapsed;
    }
}
