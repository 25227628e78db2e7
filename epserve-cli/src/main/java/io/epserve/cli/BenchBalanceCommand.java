package io.epserve.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.model.CheckpointExperts;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertCost;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertWorker;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.PlacementControl;
import io.epserve.moe.Rebalancer;
import io.epserve.moe.RoutedTokens;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.rpc.LocalWorkerProcesses;
import io.epserve.server.ExpertLoadJson;
import io.epserve.format.Checkpoint;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.stream.IntStream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code epserve bench balance}: what balanced placement buys on a skewed router. One MoE layer
 * (written once as a model directory of BF16 random weights, default OLMoE-shaped: 64 experts
 * top-8, hidden 2048, expert FFN 1024) runs steps of routed tokens through the real dispatcher
 * and expert kernels on W worker processes (or in-process workers). The routing replays a load:
 * a load file (the JSON of {@code GET /v1/epserve/load}) or a Zipf skew with the hot experts
 * spread by a seeded shuffle. First contiguous placement, then a live re-placement to the
 * balanced one (from the load the first phase observed) while steps keep running, then balanced
 * placement: tokens/s through the expert layer and balancedness of both, the predicted gain
 * (b_balanced / b_contiguous), and the step times while the re-placement runs against steady.
 *
 * <p>The balanced placement packs a cost model of the workers' time ({@link ExpertCost}: a fixed
 * part per expert run besides the part per pair), by default fitted here from probe steps
 * through the real workers before the contiguous phase ({@code --cost fit}): what a worker's step
 * takes depends on how many experts it runs, not only on its pairs.
 */
@Command(name = "balance", mixinStandardHelpOptions = true,
        description = {"Replay a routing load (a load file or a Zipf skew) through one MoE layer on W worker processes: "
                + "expert-layer tokens/s and balancedness for contiguous vs balanced placement, and the step-time "
                + "distribution while a live re-placement runs."})
final class BenchBalanceCommand implements Callable<Integer> {
    @Option(names = "--experts", defaultValue = "64", description = "Routed experts of the layer (default ${DEFAULT-VALUE}).")
    int experts;

    @Option(names = "--top-k", defaultValue = "8", description = "Experts per token (default ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--hidden", defaultValue = "2048", description = "Hidden size (default ${DEFAULT-VALUE}).")
    int hidden;

    @Option(names = "--ffn", defaultValue = "1024", description = "Expert FFN (intermediate) size (default ${DEFAULT-VALUE}).")
    int ffn;

    @Option(names = "--skew", defaultValue = "1.2", description = "Zipf exponent s of the expert popularity (default ${DEFAULT-VALUE}; 0 = uniform).")
    double skew;

    @Option(names = "--load", paramLabel = "LOAD.json", description = "Replay this load file instead of a Zipf skew (its first sparse layer).")
    Path load;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the shuffle of hot experts and of the routing (default "
            + "${DEFAULT-VALUE}: a shuffle that leaves one contiguous half with more of the hot experts, as a trained router's "
            + "layers mostly do; seed 42 happens to split them evenly, and then there is nothing for balancing to win).")
    long seed;

    @Option(names = "--workers", defaultValue = "2", description = "Expert workers (default ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--in-process", description = "In-process workers instead of worker processes (they run one after the other: "
            + "balancedness only, no throughput gain to see).")
    boolean inProcess;

    @Option(names = "--worker-threads", defaultValue = "1", description = "Kernel threads per worker process (default ${DEFAULT-VALUE}).")
    int workerThreads;

    @Option(names = "--redundant-experts", defaultValue = "1", description = "Extra expert slots per worker for the balanced placement (default ${DEFAULT-VALUE}).")
    int redundant;

    @Option(names = "--tokens", defaultValue = "512", description = "Tokens per step, the batch the expert layer sees: "
            + "a serving step's decode sequences and prefill chunks together (default ${DEFAULT-VALUE}: 64 tokens a step per "
            + "expert on average).")
    int tokens;

    @Option(names = "--cost", defaultValue = "fit", paramLabel = "fit|pairs|F",
            description = "What the balanced placement packs: fit = the workers' cost per expert run and per pair, fitted from "
                    + "probe steps through the workers before the contiguous phase; pairs = (token, expert) pairs alone; a number "
                    + "F = an expert's fixed part worth F pairs (default ${DEFAULT-VALUE}).")
    String cost;

    @Option(names = "--steps", defaultValue = "60", description = "Measured steps per placement (default ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--warmup-steps", defaultValue = "20", description = "Unmeasured steps before each measurement (default ${DEFAULT-VALUE}).")
    int warmupSteps;

    @Option(names = "--dir", paramLabel = "DIR", description = "Where the layer's model directory is written (default: under the demo cache).")
    Path dir;

    @Option(names = "--load-out", paramLabel = "LOAD.json", description = "Write the load the contiguous phase's measured steps routed "
            + "(the JSON of GET /v1/epserve/load, what the balanced placement is computed from): epserve simulate --load replays it.")
    Path loadOut;

    @Override
    public Integer call() throws Exception {
        if (experts < 2 || topK < 1 || topK > experts || hidden < 1 || ffn < 1 || workers < 1 || tokens < 1 || steps < 2
                || warmupSteps < 0 || workerThreads < 1 || redundant < 0 || !(skew >= 0)) {
            throw new Main.UsageError("need --experts >= 2, 1 <= --top-k <= --experts, positive --hidden, --ffn, --workers, --tokens, "
                    + "--worker-threads, --steps >= 2, and --warmup-steps, --redundant-experts, --skew >= 0");
        }
        if (loadOut != null && (loadOut.toAbsolutePath().getParent() == null || !Files.isDirectory(loadOut.toAbsolutePath().getParent()))) {
            throw new Main.UsageError("--load-out " + loadOut + ": its directory does not exist");
        }
        ExpertCost givenCost = givenCost();
        PrintStream out = System.out;
        double[] popularity = popularity();
        Path model = layerModel();
        ModelConfig cfg = ModelConfig.from(Checkpoint.readJson(model.resolve("config.json")));
        List<String> names;
        LocalWorkerProcesses procs = null;
        ExpertDispatcher d;
        Checkpoint ckpt = null;
        RoutedTokens routed = new RoutedTokens(cfg.sparseLayers(), experts, 10_000);
        try {
            if (inProcess) {
                ckpt = Checkpoint.open(model);
                CheckpointExperts store = new CheckpointExperts(cfg, ckpt);
                names = IntStream.range(0, workers).mapToObj(i -> "inproc-" + i).toList();
                ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), experts, names, ExpertPlacement.Policy.CONTIGUOUS, 1);
                d = new InProcessDispatcher(p, names.stream().map(n -> new ExpertWorker(n, store, experts)).toList(), routed);
            } else {
                procs = LocalWorkerProcesses.start(workers, "127.0.0.1", 0,
                        LocalWorkerProcesses.sameJvm(Main.class.getName(), List.of("-Depserve.threads=" + workerThreads),
                                List.of("worker", "--model", model.toString())),
                        System.err, LocalWorkerProcesses.DEFAULT_START_TIMEOUT);
                names = procs.addresses();
                ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), experts, names, ExpertPlacement.Policy.CONTIGUOUS, 1);
                d = new GrpcExpertDispatcher(model, p, GrpcExpertDispatcher.Config.defaults().withDeadline(Duration.ofSeconds(600)),
                        GrpcExpertDispatcher.TCP, routed).start();
            }
            int layer = IntStream.range(0, cfg.layers()).filter(cfg::isSparse).findFirst().orElseThrow();
            SplittableRandom rnd = new SplittableRandom(seed ^ 0x5DEECE66DL);
            Steps s = new Steps(popularity, layer, rnd);
            PlacementControl control = (PlacementControl) d;
            out.printf(Locale.ROOT, "layer: %d experts top-%d, hidden %d, expert FFN %d, BF16 random weights; %d tokens a step; %s%n",
                    experts, topK, hidden, ffn, tokens, load != null ? "load " + load : "Zipf s = " + skew + " (hot experts shuffled, seed " + seed + ")");
            out.printf(Locale.ROOT, "%d %s, %d kernel thread(s) each; %d warm-up + %d measured steps per placement%n", workers,
                    inProcess ? "in-process workers" : "worker processes", inProcess ? 1 : workerThreads, warmupSteps, steps);
            out.println("model directory: " + model);

            s.run(d, warmupSteps);
            ExpertCost costModel = givenCost != null ? givenCost : fitCost(d, control.placement(), s, rnd.split(), out);
            s.startCounting();
            long[] c0 = computeNanos(d);
            double[] contiguousTimes = s.run(d, steps);
            long[] c1 = computeNanos(d);
            // the load of the measured contiguous steps (not of the warm-up or probe steps)
            ExpertLoad observed = s.counted(cfg.layers(), experts);
            if (loadOut != null) {
                ObjectMapper json = new ObjectMapper();
                String written = json.writerWithDefaultPrettyPrinter().writeValueAsString(ExpertLoadJson.toJson(json, observed));
                Files.writeString(loadOut, written + "\n");
            }
            double bContiguous = control.placement().balancedness(observed)[0];
            double cContiguous = control.placement().costBalancedness(observed, costModel)[0];

            // the live change, with steps running all along
            double[] steady = contiguousTimes;
            Rebalancer rb = new Rebalancer(control, Rebalancer.Settings.onDemand(redundant).withCost(costModel), null);
            CompletableFuture<Rebalancer.Outcome> change = CompletableFuture.supplyAsync(() -> rb.rebalanceFor(observed, "bench"));
            List<Double> during = new ArrayList<>();
            while (!change.isDone()) {
                during.add(s.step(d));
            }
            Rebalancer.Outcome o = change.join();
            if (!o.changed()) {
                throw new IllegalStateException("the re-placement did not happen: " + o.reason());
            }
            s.run(d, warmupSteps);
            long[] b0 = computeNanos(d);
            double[] balancedTimes = s.run(d, steps);
            long[] b1 = computeNanos(d);
            double bBalanced = control.placement().balancedness(observed)[0];
            double cBalanced = control.placement().costBalancedness(observed, costModel)[0];

            double tpsC = tokens / mean(contiguousTimes);
            double tpsB = tokens / mean(balancedTimes);
            out.printf(Locale.ROOT, "%-12s %14s %14s %14s %12s %12s%n", "placement", "balancedness", "cost balanced", "tokens/s",
                    "p50 step ms", "p99 step ms");
            out.printf(Locale.ROOT, "%-12s %14.3f %14.3f %14.1f %12.2f %12.2f%n", "contiguous", bContiguous, cContiguous, tpsC,
                    pct(contiguousTimes, 50) * 1e3, pct(contiguousTimes, 99) * 1e3);
            out.printf(Locale.ROOT, "%-12s %14.3f %14.3f %14.1f %12.2f %12.2f%n", "balanced", bBalanced, cBalanced, tpsB,
                    pct(balancedTimes, 50) * 1e3, pct(balancedTimes, 99) * 1e3);
            if (c0 != null) {
                // where the step time goes: each worker's own compute per step (what balance evens out)
                StringBuilder sb = new StringBuilder("worker compute per step, ms (contiguous -> balanced):");
                for (int w = 0; w < c0.length; w++) {
                    sb.append(String.format(Locale.ROOT, " %s %.1f -> %.1f", names.get(w), (c1[w] - c0[w]) / 1e6 / steps,
                            (b1[w] - b0[w]) / 1e6 / steps));
                }
                out.println(sb);
            }
            double predicted = bBalanced / bContiguous;
            double gain = tpsB / tpsC;
            out.printf(Locale.ROOT, "throughput gain %.2fx; predicted by balancedness %.2fx (by cost balancedness %.2fx); "
                            + "reached %.0f%% of the predicted gain%n",
                    gain, predicted, cBalanced / cContiguous, predicted > 1 ? 100 * (gain - 1) / (predicted - 1) : 100.0);
            double[] dur = during.stream().mapToDouble(Double::doubleValue).toArray();
            if (dur.length > 0) {
                out.printf(Locale.ROOT, "re-placement: epoch %d, %.2f s, %d steps ran meanwhile: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
                                + "(steady contiguous p99 %.2f ms, balanced p99 %.2f ms; during p99 / steady p99 = %.2f)%n",
                        o.epoch(), o.seconds(), dur.length, pct(dur, 50) * 1e3, pct(dur, 99) * 1e3, Arrays.stream(dur).max().orElse(0) * 1e3,
                        pct(steady, 99) * 1e3, pct(balancedTimes, 99) * 1e3, pct(dur, 99) / pct(steady, 99));
            } else {
                out.printf(Locale.ROOT, "re-placement: epoch %d, %.2f s, no step ran meanwhile%n", o.epoch(), o.seconds());
            }
            d.close();
        } finally {
            if (procs != null) {
                procs.close();
            }
            if (ckpt != null) {
                ckpt.close();
            }
        }
        return 0;
    }

    /** The cost model {@code --cost} names; null for {@code fit} (measured later). */
    private ExpertCost givenCost() {
        return switch (cost) {
            case "fit" -> null;
            case "pairs" -> ExpertCost.PAIRS;
            default -> {
                try {
                    yield new ExpertCost(Double.parseDouble(cost));
                } catch (IllegalArgumentException e) {
                    throw new Main.UsageError("--cost must be fit, pairs or an expert's fixed part in pairs (a number >= 0), got '"
                            + cost + "'");
                }
            }
        };
    }

    /**
     * Fits the workers' cost from probe steps under the starting placement (one replica per
     * expert): each step routes {@code tokens/4} or {@code tokens} tokens to top-k experts drawn
     * from the first m experts of every worker, m from the fewest that give a token k experts up
     * to all, so that the experts a worker runs and its pairs vary independently; a sample is one
     * worker's compute in one step, as it reports it. In-process workers report none: pairs alone.
     */
    private ExpertCost fitCost(ExpertDispatcher d, ExpertPlacement p, Steps s, SplittableRandom rnd, PrintStream out) {
        if (!(d instanceof GrpcExpertDispatcher)) {
            out.println("cost: in-process workers report no compute of their own; balancing pairs alone (--cost pairs)");
            return ExpertCost.PAIRS;
        }
        int w = p.workerCount();
        int[][] held = new int[w][];
        int perWorker = Integer.MAX_VALUE;
        for (int k = 0; k < w; k++) {
            held[k] = p.expertsOn(k, s.layer);
            perWorker = Math.min(perWorker, held[k].length);
        }
        List<Integer> ms = new ArrayList<>();
        for (int m = Math.max(1, (topK + w - 1) / w); m < perWorker; m *= 2) {
            ms.add(m);
        }
        ms.add(perWorker);
        int[] tokenCounts = {Math.max(1, tokens / 4), tokens};
        List<double[]> samples = new ArrayList<>(); // {experts run, pairs, seconds}
        for (int m : ms) {
            int[] subset = new int[m * w];
            for (int k = 0; k < w; k++) {
                System.arraycopy(held[k], 0, subset, k * m, m);
            }
            for (int t : tokenCounts) {
                for (int rep = 0; rep < 2; rep++) {
                    RoutingResult r = uniformRouting(subset, t, rnd);
                    long[] before = computeNanos(d);
                    s.step(d, r);
                    long[] after = computeNanos(d);
                    for (int k = 0; k < w; k++) {
                        boolean[] runs = new boolean[experts];
                        int pairs = 0;
                        int run = 0;
                        for (int i = 0; i < t * topK; i++) {
                            int e = r.experts()[i];
                            if (p.primary(s.layer, e) == k) {
                                pairs++;
                                run += runs[e] ? 0 : 1;
                                runs[e] = true;
                            }
                        }
                        if (pairs > 0) {
                            samples.add(new double[] {run, pairs, (after[k] - before[k]) / 1e9});
                        }
                    }
                }
            }
        }
        try {
            ExpertCost.Fit f = ExpertCost.fit(samples.stream().mapToDouble(v -> v[0]).toArray(),
                    samples.stream().mapToDouble(v -> v[1]).toArray(), samples.stream().mapToDouble(v -> v[2]).toArray());
            ExpertCost c = f.cost();
            out.printf(Locale.ROOT, "cost: a worker's step = %.2f ms + %.3f ms per expert run + %.4f ms per pair (fit of %d worker "
                            + "steps): an expert's fixed part = %.1f pairs%n", f.baseSeconds() * 1e3, f.fixedSeconds() * 1e3,
                    f.secondsPerPair() * 1e3, samples.size(), c.fixedPairs());
            return c;
        } catch (IllegalArgumentException e) {
            out.println("cost: no fit (" + e.getMessage() + "); balancing pairs alone");
            return ExpertCost.PAIRS;
        }
    }

    /** {@code tokens} tokens, each to k distinct experts drawn uniformly from {@code subset}. */
    private RoutingResult uniformRouting(int[] subset, int tokenCount, SplittableRandom rnd) {
        int k = Math.min(topK, subset.length);
        int[] ids = new int[tokenCount * k];
        float[] wts = new float[tokenCount * k];
        int[] pool = subset.clone();
        for (int t = 0; t < tokenCount; t++) {
            for (int j = 0; j < k; j++) {
                int pick = j + rnd.nextInt(pool.length - j);
                int x = pool[j];
                pool[j] = pool[pick];
                pool[pick] = x;
                ids[t * k + j] = pool[j];
                wts[t * k + j] = 1f / k;
            }
        }
        return new RoutingResult(tokenCount, k, ids, wts);
    }

    /** Routing of the steps: each token draws its top-k distinct experts by popularity. */
    private final class Steps {
        private final double[] cumulative;
        final int layer;
        private final RoutingResult[] routings = new RoutingResult[16];
        private final float[][] xs = new float[4][];
        private final float[] out;
        private int next;
        /** Routed tokens per expert of the steps since {@link #startCounting}, or null when not counting. */
        private long[] counts;
        private long countedSteps;

        Steps(double[] popularity, int layer, SplittableRandom rnd) {
            this.layer = layer;
            cumulative = new double[popularity.length];
            double sum = 0;
            for (int e = 0; e < popularity.length; e++) {
                sum += popularity[e];
                cumulative[e] = sum;
            }
            for (int i = 0; i < routings.length; i++) {
                int[] ids = new int[tokens * topK];
                float[] w = new float[tokens * topK];
                for (int t = 0; t < tokens; t++) {
                    boolean[] used = new boolean[experts];
                    for (int j = 0; j < topK; j++) {
                        int e;
                        do {
                            e = draw(rnd.nextDouble() * sum);
                        } while (used[e]);
                        used[e] = true;
                        ids[t * topK + j] = e;
                        w[t * topK + j] = 1f / topK;
                    }
                }
                routings[i] = new RoutingResult(tokens, topK, ids, w);
            }
            for (int i = 0; i < xs.length; i++) {
                xs[i] = new float[tokens * hidden];
                for (int j = 0; j < xs[i].length; j++) {
                    xs[i][j] = (float) rnd.nextGaussian();
                }
            }
            out = new float[tokens * hidden];
        }

        private int draw(double u) {
            int i = Arrays.binarySearch(cumulative, u);
            return Math.min(cumulative.length - 1, i >= 0 ? i : -i - 1);
        }

        /** One step of the replayed load; its seconds. */
        double step(ExpertDispatcher d) {
            RoutingResult r = routings[next % routings.length];
            if (counts != null) {
                for (int i = 0; i < r.tokens() * r.k(); i++) {
                    counts[r.experts()[i]]++;
                }
                countedSteps++;
            }
            return step(d, r);
        }

        /** One step of the given routing (not counted); its seconds. */
        double step(ExpertDispatcher d, RoutingResult r) {
            int i = next++;
            long t0 = System.nanoTime();
            d.dispatch(layer, xs[i % xs.length], hidden, r, out);
            return (System.nanoTime() - t0) / 1e9;
        }

        double[] run(ExpertDispatcher d, int n) {
            double[] times = new double[n];
            for (int i = 0; i < n; i++) {
                times[i] = step(d);
            }
            return times;
        }

        /** Counts the routed tokens of the replayed steps from now on. */
        void startCounting() {
            counts = new long[experts];
            countedSteps = 0;
        }

        /** The load of the counted steps, as a model of {@code layers} layers with this one sparse layer. */
        ExpertLoad counted(int layers, int numExperts) {
            long[][] t = new long[layers][];
            t[layer] = counts.clone();
            return ExpertLoad.of(numExperts, t, countedSteps);
        }
    }

    /** Per expert: its share of routed tokens (the load file's first sparse layer, or Zipf over a seeded shuffle). */
    private double[] popularity() throws IOException {
        double[] p = new double[experts];
        if (load != null) {
            ExpertLoad l;
            try {
                l = ExpertLoadJson.read(new ObjectMapper(), load, experts);
            } catch (IOException | IllegalArgumentException e) {
                throw new Main.UsageError("--load " + load + ": " + e.getMessage());
            }
            int layer = IntStream.range(0, l.layers()).filter(l::has).findFirst()
                    .orElseThrow(() -> new Main.UsageError("--load " + load + ": no layer in it"));
            for (int e = 0; e < experts; e++) {
                p[e] = l.tokens(layer, e);
            }
            if (Arrays.stream(p).sum() == 0) {
                Arrays.fill(p, 1);
            }
            return p;
        }
        for (int e = 0; e < experts; e++) {
            p[e] = 1 / Math.pow(e + 1, skew);
        }
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = experts - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            double x = p[i];
            p[i] = p[j];
            p[j] = x;
        }
        return p;
    }

    /** The layer as a model directory (one sparse layer; written once per shape). */
    private Path layerModel() {
        DemoModel.Spec spec = new DemoModel.Spec("bench-balance-" + experts + "x" + hidden + "x" + ffn + "-top" + topK, hidden, 1,
                16, 4, experts, topK, ffn, 512, 1e6, 4096, 20261203L);
        Path base = dir != null ? dir : DemoModel.defaultCacheDir();
        return DemoModel.ensure(spec, base, TerminalProgress.forStderr());
    }

    /** Per remote worker, the compute time it reported so far; null for in-process workers. */
    private static long[] computeNanos(ExpertDispatcher d) {
        if (!(d instanceof GrpcExpertDispatcher g)) {
            return null;
        }
        return g.stats().workers().stream().mapToLong(w -> w.computeNanos()).toArray();
    }

    private static double mean(double[] v) {
        return Arrays.stream(v).average().orElse(Double.NaN);
    }

    static double pct(double[] v, double p) {
        double[] s = v.clone();
        Arrays.sort(s);
        int i = (int) Math.ceil(p / 100 * s.length) - 1;
        return s[Math.max(0, Math.min(s.length - 1, i))];
    }
}
