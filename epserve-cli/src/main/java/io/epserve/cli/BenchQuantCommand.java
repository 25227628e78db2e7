package io.epserve.cli;

import com.sun.management.ThreadMXBean;
import io.epserve.format.CheckpointException;
import io.epserve.model.Generator;
import io.epserve.model.LayerWeights;
import io.epserve.model.LoadedModel;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.quant.QuantAccuracy;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.DType;
import io.epserve.tensor.KernelPool;
import io.epserve.tensor.Kernels;
import io.epserve.tensor.Tensor;
import io.epserve.tensor.VectorKernels;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine;

/**
 * {@code epserve bench quant}: what quantized experts cost and gain. For each
 * model and each expert dtype: KL divergence of next-token distributions and top-1 agreement
 * against the experts as stored, over {@code --positions} seeded random tokens (one prefill,
 * every position), and with {@code --speed} decode tokens/s (a prompt of random tokens, greedy
 * tokens with EOS ignored, median of runs, as {@code epserve bench}). Prints a Markdown table.
 */
@Command(name = "quant", mixinStandardHelpOptions = true,
        description = {"Accuracy and speed of routed experts in quantized dtypes against the experts as stored: "
                + "KL divergence of next-token distributions and top-1 agreement over --positions seeded random tokens, "
                + "and with --speed decode tokens/s. Converted experts are cached next to each checkpoint (built on first use)."})
final class BenchQuantCommand implements Callable<Integer> {

    @Option(names = "--model", paramLabel = "DIR", description = "Model directory (repeatable). Default: the demo model, "
            + "unless --fixtures is given.")
    List<Path> models = new ArrayList<>();

    @Option(names = "--fixtures", paramLabel = "DIR", description = "Also every DIR/*/model (the golden fixtures). Their "
            + "checkpoints are copied to a temporary folder first, so no cache is written into DIR.")
    Path fixtures;

    @Option(names = "--demo", description = "Also the built-in demo model (default when no --model or --fixtures is given).")
    boolean demo;

    @Option(names = "--dtypes", split = ",", defaultValue = "q8_0,q4_0,q4_k", paramLabel = "DTYPE",
            description = "Expert dtypes to compare with the stored experts (default ${DEFAULT-VALUE}).")
    List<String> dtypes;

    @Option(names = "--positions", defaultValue = "256", description = "Token positions compared (default ${DEFAULT-VALUE}).")
    int positions;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the random tokens (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--speed", description = "Also measure decode tokens/s.")
    boolean speed;

    @Option(names = "--matvec", description = "Also the expert matvec kernel alone: y = W x over every routed expert matrix "
            + "of the model in turn (gate, up, down; m = 1, as decode), on 1 and on all kernel threads, best of ~4 s.")
    boolean matvec;

    @Option(names = "--prompt-tokens", defaultValue = "128", description = "Prompt length of --speed (default ${DEFAULT-VALUE}).")
    int promptTokens;

    @Option(names = "--gen-tokens", defaultValue = "32", description = "Tokens decoded by --speed (default ${DEFAULT-VALUE}).")
    int genTokens;

    @Option(names = "--runs", defaultValue = "3", description = "Measured runs of --speed (default ${DEFAULT-VALUE}).")
    int runs;

    @Option(names = "--warmup", defaultValue = "1", description = "Unmeasured warm-up runs of --speed (default ${DEFAULT-VALUE}).")
    int warmup;

    @Option(names = "--alternate", paramLabel = "ROUNDS", description = "Decode speed only, A/B in one process: the stored "
            + "experts and each --dtypes model are all loaded, then decoded in turn (median of --runs each), ROUNDS times over, "
            + "so that a shared machine's load falls on all of them alike. Prints each round, the ratios to the stored experts, "
            + "the bytes read per decoded token and the GB/s they come to, the process's CPU time per decoded token (steadier than "
            + "tokens/s on a loaded machine; run with -Depserve.threads=1 to keep idle workers' spinning out of it), and the load "
            + "average at start and end.")
    Integer alternate;

    /** Runs without the main command registered: {@code java -cp ... io.epserve.cli.BenchQuantCommand ...}. */
    public static void main(String[] args) {
        System.exit(new CommandLine(new BenchQuantCommand()).execute(args));
    }

    @Override
    public Integer call() throws IOException {
        if (positions < 1 || promptTokens < 1 || genTokens < 2 || runs < 1 || warmup < 0) {
            throw new Main.UsageError("--positions >= 1, --prompt-tokens >= 1, --gen-tokens >= 2, --runs >= 1 and --warmup >= 0 are required");
        }
        List<DType> kinds = new ArrayList<>();
        for (String d : dtypes) {
            try {
                kinds.add(DType.parse(d));
            } catch (IllegalArgumentException e) {
                throw new Main.UsageError("--dtypes: " + e.getMessage());
            }
        }
        TerminalProgress progress = TerminalProgress.forStderr();
        if (alternate != null) {
            if (alternate < 1) {
                throw new Main.UsageError("--alternate needs at least 1 round, got " + alternate);
            }
            if (fixtures != null || models.size() > 1) {
                throw new Main.UsageError("--alternate measures one model: give at most one --model and no --fixtures");
            }
            Path dir = models.isEmpty() ? DemoModel.ensure(DemoModel.STANDARD, DemoModel.defaultCacheDir(), progress) : models.get(0);
            alternate(dir, kinds, progress);
            return 0;
        }
        List<Path> dirs = new ArrayList<>(models);
        Path scratch = null;
        if (fixtures != null) {
            scratch = Files.createTempDirectory("epserve-bench-quant");
            try (Stream<Path> s = Files.list(fixtures)) {
                for (Path f : s.sorted().toList()) {
                    if (Files.isRegularFile(f.resolve("model").resolve("config.json"))) {
                        dirs.add(copyModel(f.resolve("model"), scratch.resolve(f.getFileName())));
                    }
                }
            }
        }
        if (demo || dirs.isEmpty()) {
            dirs.add(DemoModel.ensure(DemoModel.STANDARD, DemoModel.defaultCacheDir(), progress));
        }
        PrintStreamTable out = new PrintStreamTable();
        System.out.printf(Locale.ROOT, "threads: %d, vector lanes: %d; %d positions of seeded random tokens (seed %d)%s%n",
                KernelPool.common().threads(), VectorKernels.lanes(), positions, seed,
                speed ? String.format(Locale.ROOT, "; decode: prompt %d, %d greedy tokens, median of %d runs after %d warm-up",
                        promptTokens, genTokens, runs, warmup) : "");
        System.out.printf(Locale.ROOT, "quantized products: %s%n", Kernels.quantizedMatvecKernels());
        out.header(speed);
        try {
            for (Path dir : dirs) {
                benchModel(dir, kinds, progress, out);
            }
        } finally {
            if (scratch != null) {
                deleteTree(scratch);
            }
        }
        return 0;
    }

    private void benchModel(Path dir, List<DType> kinds, TerminalProgress progress, PrintStreamTable out) {
        String name = dir.getFileName().toString();
        float[] ref;
        int[] tokens;
        int vocab;
        double refSpeed = Double.NaN;
        String storedAs;
        long refBytes;
        try (LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults().withProgress(progress))) {
            vocab = m.config().vocabSize();
            tokens = QuantAccuracy.tokens(Math.min(positions, m.config().maxPositions()), vocab, seed);
            ref = QuantAccuracy.logits(m, tokens);
            storedAs = m.weights().experts().expert(firstSparse(m), 0).gate().dtype().label();
            refBytes = expertBytes(m);
            if (speed) {
                refSpeed = decodeSpeed(m);
            }
        }
        out.row(name, storedAs + " (stored)", refBytes, null, refSpeed, refSpeed);
        List<String> kernelLines = new ArrayList<>();
        if (matvec) {
            try (LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults().withProgress(progress))) {
                kernelLines.addAll(matvecSpeed(m, storedAs + " (stored)"));
            }
        }
        for (DType dt : kinds) {
            try (LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults().withProgress(progress).withExpertDType(dt))) {
                QuantAccuracy.Result r = QuantAccuracy.compare(ref, QuantAccuracy.logits(m, tokens), vocab);
                double s = speed ? decodeSpeed(m) : Double.NaN;
                out.row(name, dt.label(), expertBytes(m), r, s, refSpeed);
                if (matvec) {
                    kernelLines.addAll(matvecSpeed(m, dt.label()));
                }
            } catch (CheckpointException | IllegalArgumentException e) {
                out.skipped(name, dt.label(), e.getMessage());
            }
        }
        if (!kernelLines.isEmpty()) {
            System.out.println();
            System.out.println("| model | experts | threads | matvec Gweights/s | GB/s of weights |");
            System.out.println("| --- | --- | ---: | ---: | ---: |");
            kernelLines.forEach(l -> System.out.println("| " + name + " | " + l + " |"));
            System.out.println();
        }
    }

    /** y = W x (m = 1) over every routed expert matrix in turn, best pass of ~4 s, on 1 and on all kernel threads. */
    private static List<String> matvecSpeed(LoadedModel m, String label) {
        List<Tensor> ws = new ArrayList<>();
        for (int l = 0; l < m.config().layers(); l++) {
            if (m.config().isSparse(l)) {
                for (int e = 0; e < m.config().numExperts(); e++) {
                    ExpertWeights w = m.weights().expert(l, e);
                    ws.addAll(List.of(w.gate(), w.up(), w.down()));
                }
            }
        }
        long weights = ws.stream().mapToLong(Tensor::size).sum();
        long bytes = ws.stream().mapToLong(t -> t.data().byteSize()).sum();
        int widest = ws.stream().mapToInt(t -> Math.max(t.rows(), t.cols())).max().orElse(1);
        float[] x = new float[widest];
        float[] y = new float[widest];
        SplittableRandom r = new SplittableRandom(7);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextDouble() * 2 - 1);
        }
        List<String> lines = new ArrayList<>();
        int all = KernelPool.common().threads();
        for (int threads : all == 1 ? new int[] {1} : new int[] {1, all}) {
            try (KernelPool pool = new KernelPool(threads)) {
                double best = 0;
                long end = System.nanoTime() + 4_000_000_000L;
                while (System.nanoTime() < end) {
                    long t0 = System.nanoTime();
                    for (Tensor w : ws) {
                        VectorKernels.matmul(x, 0, 1, w, y, 0, pool);
                    }
                    best = Math.max(best, weights / (double) (System.nanoTime() - t0));
                }
                lines.add(String.format(Locale.ROOT, "%s | %d | %.2f | %.1f", label, threads, best, best * bytes / weights));
            }
        }
        return lines;
    }

    private static int firstSparse(LoadedModel m) {
        for (int l = 0; l < m.config().layers(); l++) {
            if (m.config().isSparse(l)) {
                return l;
            }
        }
        throw new IllegalStateException("no sparse layer");
    }

    /** Bytes of all routed experts as computed on (stored or converted). */
    private static long expertBytes(LoadedModel m) {
        long b = 0;
        for (int l = 0; l < m.config().layers(); l++) {
            if (m.config().isSparse(l)) {
                for (int e = 0; e < m.config().numExperts(); e++) {
                    b += m.weights().expert(l, e).bytes();
                }
            }
        }
        return b;
    }

    private double decodeSpeed(LoadedModel m) {
        return decode(m).tokensPerSecond();
    }

    /**
     * Decode figures of one model: medians over --runs of tokens/s (wall) and of the process's CPU
     * time per decoded token, taken between the first and the last generated token (so without
     * the prefill). On a loaded machine the CPU time is the steadier figure: time slices taken
     * by other processes do not count in it (idle kernel workers spinning before they park do;
     * with {@code -Depserve.threads=1} there are none).
     */
    private DecodeFigures decode(LoadedModel m) {
        int[] prompt = new SplittableRandom(42).ints(promptTokens, 0, m.config().vocabSize()).toArray();
        double[] tps = new double[runs];
        double[] cpuMs = new double[runs];
        for (int i = -warmup; i < runs; i++) {
            long[] cpu = new long[2];
            int[] seen = new int[1];
            Generator.Result r = Generator.generate(m.transformer(), prompt, genTokens, SamplingParams.GREEDY, true, Set.of(), t -> {
                cpu[seen[0] == 0 ? 0 : 1] = processCpuNanos();
                seen[0]++;
            });
            if (i >= 0) {
                tps[i] = r.decodeTokensPerSecond();
                cpuMs[i] = seen[0] > 1 ? (cpu[1] - cpu[0]) / 1e6 / (seen[0] - 1) : Double.NaN;
            }
        }
        return new DecodeFigures(BenchCommand.median(tps), BenchCommand.median(cpuMs));
    }

    record DecodeFigures(double tokensPerSecond, double cpuMsPerToken) {}

    /**
     * CPU time of this process's live threads (the kernel pool's included), in nanoseconds: the
     * per-thread clocks are exact, where the process clock ticks in 10 ms steps on Linux, too
     * coarse for the few tokens of a short run.
     */
    private static long processCpuNanos() {
        ThreadMXBean threads = ManagementFactory.getPlatformMXBean(ThreadMXBean.class);
        long sum = 0;
        for (long t : threads.getThreadCpuTime(threads.getAllThreadIds())) {
            sum += Math.max(0, t);
        }
        return sum;
    }

    /** The {@code --alternate} run: every expert dtype of one model decoded in turn, round after round. */
    private void alternate(Path dir, List<DType> kinds, TerminalProgress progress) {
        List<LoadedModel> loaded = new ArrayList<>();
        List<String> labels = new ArrayList<>();
        try {
            loaded.add(LoadedModel.load(dir, LoadedModel.Options.defaults().withProgress(progress)));
            labels.add(loaded.get(0).weights().experts().expert(firstSparse(loaded.get(0)), 0).gate().dtype().label() + " (stored)");
            for (DType dt : kinds) {
                loaded.add(LoadedModel.load(dir, LoadedModel.Options.defaults().withProgress(progress).withExpertDType(dt)));
                labels.add(dt.label());
            }
            System.out.printf(Locale.ROOT, "model %s; threads %d, vector lanes %d; quantized matvec: %s%n", dir.getFileName(),
                    KernelPool.common().threads(), VectorKernels.lanes(), Kernels.quantizedMatvecKernels());
            System.out.printf(Locale.ROOT, "decode: prompt %d random tokens, %d greedy tokens, median of %d runs after %d warm-up, "
                    + "%d rounds; load average at start: %s%n", promptTokens, genTokens, runs, warmup, alternate, loadAverage());
            System.out.println();
            System.out.println("| round | experts | decode tok/s | vs stored | MB read per token | GB/s | CPU ms per token | vs stored |");
            System.out.println("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            double[][] tps = new double[loaded.size()][alternate];
            double[][] cpu = new double[loaded.size()][alternate];
            for (int round = 0; round < alternate; round++) {
                for (int i = 0; i < loaded.size(); i++) {
                    DecodeFigures f = decode(loaded.get(i));
                    tps[i][round] = f.tokensPerSecond();
                    cpu[i][round] = f.cpuMsPerToken();
                    double mb = decodeBytes(loaded.get(i)) / 1e6;
                    System.out.printf(Locale.ROOT, "| %d | %s | %.1f | %.2f× | %.3g | %.1f | %.2f | %.2f× |%n", round + 1, labels.get(i),
                            tps[i][round], tps[i][round] / tps[0][round], mb, tps[i][round] * mb / 1e3, cpu[i][round],
                            cpu[0][round] / cpu[i][round]);
                    System.out.flush();
                }
            }
            System.out.println();
            for (int i = 1; i < loaded.size(); i++) {
                double[] ratio = new double[alternate];
                double[] cpuRatio = new double[alternate];
                for (int round = 0; round < alternate; round++) {
                    ratio[round] = tps[i][round] / tps[0][round];
                    cpuRatio[round] = cpu[0][round] / cpu[i][round];
                }
                System.out.printf(Locale.ROOT, "%s / %s: decode tok/s median %.2f× (rounds %s); CPU time per token median %.2f× less (rounds %s)%n",
                        labels.get(i), labels.get(0), BenchCommand.median(ratio), twoDecimals(ratio), BenchCommand.median(cpuRatio),
                        twoDecimals(cpuRatio));
            }
            System.out.printf(Locale.ROOT, "load average at end: %s%n", loadAverage());
        } finally {
            loaded.forEach(LoadedModel::close);
        }
    }

    /**
     * Bytes of weights one decoded token reads: every layer's attention, norms, router and dense
     * or shared feed-forward, top-k routed experts per sparse layer (at their mean size), and the
     * lm_head; the embedding row is negligible and not counted.
     */
    static long decodeBytes(LoadedModel m) {
        long b = m.weights().lmHead().data().byteSize() + m.weights().finalNorm().data().byteSize();
        for (int l = 0; l < m.config().layers(); l++) {
            LayerWeights lw = m.weights().layer(l);
            b += lw.inputNorm().data().byteSize() + lw.postAttentionNorm().data().byteSize();
            b += switch (lw.attention()) {
                case LayerWeights.Gqa g -> bytes(g.q(), g.k(), g.v(), g.o(), g.qNorm(), g.kNorm());
                case LayerWeights.Mla a -> bytes(a.qA(), a.qANorm(), a.qB(), a.q(), a.kvA(), a.kvANorm(), a.kvB(), a.o());
            };
            b += switch (lw.ffn()) {
                case LayerWeights.Dense d -> d.mlp().bytes();
                case LayerWeights.Moe moe -> {
                    long experts = 0;
                    for (int e = 0; e < m.config().numExperts(); e++) {
                        experts += m.weights().expert(l, e).bytes();
                    }
                    yield bytes(moe.gate(), moe.sharedGate()) + (moe.shared() == null ? 0 : moe.shared().bytes())
                            + experts * m.config().topK() / m.config().numExperts();
                }
            };
        }
        return b;
    }

    private static long bytes(Tensor... ts) {
        long b = 0;
        for (Tensor t : ts) {
            b += t == null ? 0 : t.data().byteSize();
        }
        return b;
    }

    private static String twoDecimals(double[] v) {
        return Arrays.stream(v).mapToObj(x -> String.format(Locale.ROOT, "%.2f", x)).toList().toString();
    }

    /** The 1, 5 and 15 minute load averages (Linux), or "unknown". */
    private static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "unknown";
        }
    }

    private static Path copyModel(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        try (Stream<Path> s = Files.list(from)) {
            for (Path p : s.toList()) {
                if (Files.isRegularFile(p)) {
                    Files.copy(p, to.resolve(p.getFileName()));
                }
            }
        }
        return to;
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The Markdown table on stdout. */
    private static final class PrintStreamTable {
        private boolean speed;

        void header(boolean withSpeed) {
            speed = withSpeed;
            System.out.println();
            System.out.println("| model | experts | expert bytes | mean KL (nats) | max KL | top-1 agreement"
                    + (speed ? " | decode tok/s | vs stored |" : " |"));
            System.out.println("| --- | --- | ---: | ---: | ---: | ---: |" + (speed ? " ---: | ---: |" : ""));
        }

        void row(String model, String experts, long bytes, QuantAccuracy.Result r, double tps, double refTps) {
            String acc = r == null ? "— | — | —"
                    : String.format(Locale.ROOT, "%.3g | %.3g | %.1f%%", r.meanKl(), r.maxKl(), 100 * r.top1Agreement());
            String sp = speed ? String.format(Locale.ROOT, " | %.1f | %.2f×", tps, tps / refTps) : "";
            System.out.printf(Locale.ROOT, "| %s | %s | %s | %s%s |%n", model, experts, mib(bytes), acc, sp);
            System.out.flush();
        }

        void skipped(String model, String experts, String why) {
            System.out.printf(Locale.ROOT, "| %s | %s | — | refused: %s | — | —%s%n", model, experts, why.replace('|', '/'),
                    speed ? " | — | — |" : " |");
            System.out.flush();
        }

        static String mib(long bytes) {
            return String.format(Locale.ROOT, "%.1f MiB", bytes / 1048576.0);
        }
    }
}
