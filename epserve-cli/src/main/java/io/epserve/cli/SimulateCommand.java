package io.epserve.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.Checkpoint;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.plan.ByteSize;
import io.epserve.model.plan.PlanModel;
import io.epserve.model.plan.WeightFormat;
import io.epserve.sim.Calibration;
import io.epserve.sim.Cluster;
import io.epserve.sim.CostModel;
import io.epserve.sim.Cpu;
import io.epserve.sim.ExpertPopularity;
import io.epserve.sim.HostLayout;
import io.epserve.sim.ModelShape;
import io.epserve.sim.Network;
import io.epserve.sim.PlacementChoice;
import io.epserve.sim.Prediction;
import io.epserve.sim.Scenario;
import io.epserve.sim.SimResult;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code epserve simulate}: serving at a scale this machine cannot run, from a model calibrated on what it can. */
@Command(name = "simulate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Predict batched-decode serving with W expert workers on N hosts: a discrete-event "
                + "model (epserve-sim) of every frontend's steps, per layer its own products (attention, "
                + "router, shared expert or dense MLP), the dispatch to the workers holding the chosen "
                + "experts, each worker's experts, the answers and the combine; processes, shared cores and "
                + "each host's network link are queues. Compute times come from a cost model of this "
                + "machine's kernels (--cost, --fit-cost); the model's shapes from config.json alone.",
                "",
                "Prints per configuration: tokens/s, step time p50/p90/p99, worker utilisation, EP "
                + "efficiency (tokens/s with W workers / W x tokens/s with one worker and F/W frontends), "
                + "memory per worker against a full replica, and data parallelism (replicas holding every "
                + "expert, one process each, no network) at equal total memory and at equal worker count. "
                + "--model and --workers take several values: one row per model and worker count.",
                "",
                "--calibrate FILE instead predicts configurations measured for real and prints predicted "
                + "against measured (tools/calibrate.sh measures them and writes FILE)."})
final class SimulateCommand implements Callable<Integer> {

    @Option(names = "--model", paramLabel = "DIR|config.json|demo", split = ",",
            description = "Model directory or config.json, or demo for the built-in demo model's config (repeatable, or comma-separated). Default: demo (nothing is written).")
    List<String> models = new ArrayList<>();

    @Option(names = "--expert-dtype", paramLabel = "DTYPE", defaultValue = "bf16",
            description = "How the routed experts are stored: bf16, f16, f32, q8_0, q4_0, q4_k (default ${DEFAULT-VALUE}).")
    String expertDtype;

    @Option(names = "--workers", paramLabel = "W", split = ",", defaultValue = "2",
            description = "Expert workers, one or more counts, e.g. 8,32,128 (default ${DEFAULT-VALUE}).")
    int[] workers;

    @Option(names = "--frontends", paramLabel = "F|per-worker", defaultValue = "1",
            description = "Frontend processes, each decoding its own --batch sequences; 'per-worker' for one per worker (F = W: attention beside experts, as in DeepSeek's deployment) (default ${DEFAULT-VALUE}).")
    String frontends;

    @Option(names = "--hosts", paramLabel = "N|auto", defaultValue = "auto",
            description = "Hosts, each with one network link; auto: one per worker (colocated layout) or one per worker plus the frontends' (frontend-host layout) (default ${DEFAULT-VALUE}).")
    String hosts;

    @Option(names = "--layout", paramLabel = "LAYOUT", defaultValue = "colocated",
            description = "colocated: frontend f on host f mod N, worker w on host w mod N; frontend-host: all frontends on host 0, workers on the others in turn (default ${DEFAULT-VALUE}).")
    String layout;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "32",
            description = "Sequences each frontend decodes per step, one token each (default ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--overlap", description = "Two micro-batches per step: one's dispatch in flight while the other computes.")
    boolean overlap;

    @Option(names = "--frontend-threads", paramLabel = "T", defaultValue = "2",
            description = "Kernel threads of a frontend (and of a data-parallel replica) (default ${DEFAULT-VALUE}).")
    int frontendThreads;

    @Option(names = "--worker-threads", paramLabel = "T", defaultValue = "2",
            description = "Kernel threads of a worker (default ${DEFAULT-VALUE}).")
    int workerThreads;

    @Option(names = "--cpu", paramLabel = "MODE", defaultValue = "per-host:2",
            description = "Which processes share cores: dedicated (each process its own), per-host:C (the processes of a host share C cores), machine:C (every process shares C cores: this machine's loopback and namespace runs) (default ${DEFAULT-VALUE}).")
    String cpu;

    @Option(names = "--latency-us", paramLabel = "US", defaultValue = "20",
            description = "One-way latency between two hosts, microseconds (default ${DEFAULT-VALUE}).")
    double latencyMicros;

    @Option(names = "--bandwidth", paramLabel = "RATE", defaultValue = "25gbit",
            description = "Each host's link rate per direction: e.g. 25gbit, 1gbit, 500mbit, or unlimited (default ${DEFAULT-VALUE}).")
    String bandwidth;

    @Option(names = "--message-us", paramLabel = "US", defaultValue = "0",
            description = "Software cost of one message at each end (serialising, the RPC stack, system calls), microseconds of one core of the sender's host and as many of the receiver's, competing with the kernels for those cores; --calibrate fits it for this machine's loopback gRPC (default ${DEFAULT-VALUE}).")
    double messageMicros;

    @Option(names = "--byte-ns", paramLabel = "NS", defaultValue = "0",
            description = "Software cost per byte of a message at each end (encoding, copying, decoding), nanoseconds of one core, added to --message-us; --calibrate with two fit-message points fits it (default ${DEFAULT-VALUE}).")
    double byteNanos;

    @Option(names = "--handoff-us", paramLabel = "US", defaultValue = "0",
            description = "Wall time of one message's hand-off to the thread that acts on it (waking a sleeping thread; on a virtual machine a halted vCPU), microseconds, using no core; not fitted by --calibrate (default ${DEFAULT-VALUE}).")
    double handoffMicros;

    @Option(names = "--wire-dtype", paramLabel = "DTYPE", defaultValue = "f32",
            description = "Activations on the wire: f32 or bf16 (default ${DEFAULT-VALUE}).")
    String wireDtype;

    @Option(names = "--load", paramLabel = "FILE",
            description = "Routed load per expert: {\"layers\":[{\"layer\":0,\"tokens\":[n_0..n_{E-1}]}]}, what GET /v1/epserve/load returns; layers it lacks take the mean of those it has.")
    Path load;

    @Option(names = "--zipf", paramLabel = "S",
            description = "Instead of --load: expert of rank r gets a share ∝ 1/r^S (ranks shuffled per layer). Default: uniform.")
    Double zipf;

    @Option(names = "--policy", paramLabel = "POLICY", defaultValue = "contiguous", split = ",",
            description = "Placement: contiguous, round_robin, replicated or balanced; several give a row each (default ${DEFAULT-VALUE}). With more workers than experts, contiguous and round_robin leave workers without experts, as the dispatcher does.")
    List<String> policies;

    @Option(names = "--redundant-slots", paramLabel = "R", defaultValue = "0",
            description = "Balanced placement: extra expert replicas per worker for hot experts (default ${DEFAULT-VALUE}).")
    int redundantSlots;

    @Option(names = "--routing", paramLabel = "MODE", defaultValue = "sampled",
            description = "sampled: each token draws its top-k experts from the load every step (steps vary); expected: every step gets the expected count per expert (default ${DEFAULT-VALUE}).")
    String routing;

    @Option(names = "--steps", paramLabel = "N", defaultValue = "20", description = "Decode steps per frontend (default ${DEFAULT-VALUE}).")
    int steps;

    @Option(names = "--seed", paramLabel = "N", defaultValue = "1", description = "Seed of the routing draws and Zipf ranks (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--cost", paramLabel = "FILE",
            description = "Cost model JSON (as --fit-cost writes). Default: this machine's figures recorded in BENCHMARKS.md.")
    Path cost;

    @Option(names = "--fit-cost", paramLabel = "FILE",
            description = "Measure the expert kernels here (BF16, one thread, the first --model's expert shape, 1-32 tokens) and write a cost model to FILE, then exit.")
    Path fitCost;

    @Option(names = "--memory-per-worker", paramLabel = "SIZE",
            description = "Memory of a worker, e.g. 24GiB: a data-parallel replica larger than it gets no equal-worker-count figure.")
    String memoryPerWorker;

    @Option(names = "--calibrate", paramLabel = "FILE",
            description = "Measured points, one per line (tab-separated, # comments): name, use (fit-frontend: two single-process points at two batch sizes; fit-message: one point through workers, or two at two batch sizes to fit the hand-off too; predict), model (a path, or demo), workers (0 = single process), layout, policy, overlap (on/off), batch, latency_us, bandwidth, measured tokens/s; then optional key=value fields: load=FILE (the routing load, a GET /v1/epserve/load file, relative to FILE's directory; default uniform), redundant=N (the balanced policy's redundant slots per worker), workload=decode|expert-layers (expert-layers: the sparse layers' dispatches alone, no frontend work or output head, as bench balance runs them; default decode); one frontend per point, --cpu and the thread counts as given (tools/calibrate.sh: machine:2, 2 and 1). Prints predicted against measured.")
    Path calibrate;

    @Option(names = "--calibrate-runs", paramLabel = "DIR", split = ",",
            description = "Several calibration runs of the same points, each a directory as tools/calibrate.sh writes it (points.tsv, "
                    + "and cost.json: that run's kernel probe): prints each run's table, then the pooled one (per configuration the mean "
                    + "of the runs' measurements against the mean of their predictions, each run fitted on its own points).")
    List<Path> calibrateRuns;

    @Option(names = "--save-cost", paramLabel = "FILE",
            description = "With --calibrate: write the fitted cost model (frontend overheads included) to FILE, for --cost.")
    Path saveCost;

    @Override
    public Integer call() {
        if (fitCost != null) {
            CostProbe.fit(shapes().getFirst(), System.out).write(fitCost);
            System.out.println("cost model written to " + fitCost);
            return 0;
        }
        CostModel costModel = cost == null ? CostModel.thisMachine() : CostModel.read(cost);
        if (calibrate != null && calibrateRuns != null) {
            throw new Main.UsageError("--calibrate and --calibrate-runs exclude each other");
        }
        if (calibrate != null) {
            Calibration.Result r = calibration(calibrate, costModel);
            if (saveCost != null) {
                r.cost().write(saveCost);
            }
            printRun(r);
            return 0;
        }
        if (calibrateRuns != null) {
            return runPooled();
        }
        PrintStream out = System.out;
        Network net = network(latencyMicros, bandwidth, messageMicros, byteNanos, handoffMicros);
        List<PlacementChoice> placements = policies.stream().map(p -> PlacementChoice.parse(p, redundantSlots)).toList();
        long memory = memoryPerWorker == null ? 0 : ByteSize.parse(memoryPerWorker);
        out.printf(Locale.ROOT, "network %s, %.0f µs one way; a message's software %.0f µs + %.2f ns per byte of a core at each end, %.0f µs "
                + "hand-off; %s on the wire; cpu %s; batch %d per frontend%s; %s routing, %d steps; cost model: %s%n", bandwidth, latencyMicros,
                messageMicros, byteNanos, handoffMicros, wireDtype, cpu, batch,
                overlap ? ", two-batch overlap" : "", routing, steps, costModel.source());
        out.println("| model | placement | W | F | hosts | tokens/s | step p50 / p90 / p99 ms | worker util mean (min–max) | imbalance | EP efficiency "
                + "| memory per worker (vs full replica) | DP, equal memory: replicas, tokens/s (EP/DP) | DP, equal workers: tokens/s (EP/DP) |");
        out.println("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- | --- | --- |");
        List<Prediction> last = new ArrayList<>();
        for (ModelShape m : shapes()) {
            for (PlacementChoice placement : placements) {
                for (int w : workers) {
                    if (w < 1) {
                        throw new Main.UsageError("--workers: each count must be >= 1, got " + w);
                    }
                    Scenario s = scenario(m, costModel, net, w, batch, overlap, placement);
                    Prediction p = Prediction.of(s, placement, memory);
                    last.add(p);
                    out.println(row(m, placement, s.cluster(), p));
                    out.flush();
                }
            }
        }
        if (last.size() == 1) {
            double[] u = last.getFirst().ep().workerUtilisation();
            out.println("worker utilisation: " + Arrays.stream(u).mapToObj(x -> String.format(Locale.ROOT, "%.2f", x)).toList());
            out.printf(Locale.ROOT, "wire bytes per token: %.0f; one worker: %.1f tokens/s; one DP replica: %.1f tokens/s%n",
                    last.getFirst().ep().wireBytesPerToken(), last.getFirst().oneWorker().tokensPerSecond(),
                    last.getFirst().replica().tokensPerSecond());
        }
        return 0;
    }

    private static String row(ModelShape m, PlacementChoice placement, Cluster c, Prediction p) {
        SimResult r = p.ep();
        double[] u = r.workerUtilisation();
        double min = Arrays.stream(u).min().orElse(0);
        double max = Arrays.stream(u).max().orElse(0);
        String dpWorkers = p.fullReplicaFits()
                ? String.format(Locale.ROOT, "%.1f (%.2f×)", p.dpEqualWorkersTokensPerSecond(), r.tokensPerSecond() / p.dpEqualWorkersTokensPerSecond())
                : "a full replica does not fit a worker";
        return String.format(Locale.ROOT, "| %s | %s | %d | %d | %d | %.1f | %.1f / %.1f / %.1f | %.2f (%.2f–%.2f) | %.2f | %.2f | %s (%.1f%%) | %d, %.1f (%.2f×) | %s |",
                shortName(m.name()), placement, c.workers(), c.frontends(), c.hosts(), r.tokensPerSecond(), r.stepP50() * 1e3, r.stepP90() * 1e3,
                r.stepP99() * 1e3, r.meanWorkerUtilisation(), min, max, r.imbalance(), p.epEfficiency(), ByteSize.format(p.maxWorkerBytes()),
                100.0 * p.maxWorkerBytes() / p.fullModelBytes(), p.dpReplicasEqualMemory(), p.dpEqualMemoryTokensPerSecond(),
                r.tokensPerSecond() / p.dpEqualMemoryTokensPerSecond(), dpWorkers);
    }

    private static String shortName(String source) {
        Path p = Path.of(source);
        if (p.getFileName() != null && p.getFileName().toString().equals("config.json") && p.getParent() != null) {
            return p.getParent().getFileName().toString();
        }
        return p.getFileName() == null ? source : p.getFileName().toString();
    }

    private List<ModelShape> shapes() {
        WeightFormat f = WeightFormat.parse(expertDtype);
        List<String> names = models.isEmpty() ? List.of("demo") : models;
        return names.stream().map(p -> shape(p, f)).toList();
    }

    private static ModelShape shape(String model, WeightFormat f) {
        PlanModel pm = model.equals("demo") ? PlanModel.demo(DemoModel.STANDARD) : PlanModel.load(Path.of(model));
        return ModelShape.of(pm, f);
    }

    private Scenario scenario(ModelShape m, CostModel costModel, Network net, int w, int b, boolean ov, PlacementChoice placement) {
        HostLayout hl = parseLayout(layout);
        int f = frontends.equalsIgnoreCase("per-worker") ? Math.max(1, w) : positive(frontends, "--frontends");
        int h = hosts.equalsIgnoreCase("auto") ? (hl == HostLayout.FRONTEND_HOST ? w + 1 : Math.max(1, w)) : positive(hosts, "--hosts");
        Cluster c = new Cluster(w, h, f, b, ov, frontendThreads, workerThreads, parseCpu(cpu), hl);
        ExpertPopularity pop = popularity(m);
        return new Scenario(m, costModel, net, c, pop, w == 0 ? null : placement.place(m, w, pop), parseRouting(routing), steps, seed,
                Scenario.Workload.DECODE);
    }

    private ExpertPopularity popularity(ModelShape m) {
        if (load != null && zipf != null) {
            throw new Main.UsageError("--load and --zipf are alternatives: give one");
        }
        if (load != null) {
            return readLoad(load, m);
        }
        return zipf != null ? ExpertPopularity.zipf(m.layers(), m.experts(), zipf, seed) : ExpertPopularity.uniform(m.layers(), m.experts());
    }

    /** A routing load file ({@code GET /v1/epserve/load}'s JSON) as the model's expert popularity. */
    private static ExpertPopularity readLoad(Path file, ModelShape m) {
        try {
            return ExpertPopularity.fromLoad(new ObjectMapper().readTree(file.toFile()), m.sparse(), m.experts(), file.toString());
        } catch (IOException e) {
            throw new UncheckedIOException("load " + file + ": " + e.getMessage(), e);
        }
    }

    private Network network(double latencyUs, String rate, double messageUs, double byteNs, double handoffUs) {
        if (!(latencyUs >= 0) || !(messageUs >= 0) || !(byteNs >= 0) || !(handoffUs >= 0)) {
            throw new Main.UsageError("--latency-us, --message-us, --byte-ns and --handoff-us must be >= 0");
        }
        return new Network(latencyUs * 1e-6, parseRate(rate), messageUs * 1e-6, byteNs * 1e-9, handoffUs * 1e-6, parseWire(wireDtype));
    }

    static int parseWire(String s) {
        return switch (s.toLowerCase(Locale.ROOT)) {
            case "f32" -> 4;
            case "bf16" -> 2;
            default -> throw new Main.UsageError("--wire-dtype " + s + ": use f32 or bf16");
        };
    }

    /** 25gbit, 1gbit, 500mbit, 10000000 (bit/s), unlimited. */
    static double parseRate(String s) {
        String r = s.trim().toLowerCase(Locale.ROOT);
        if (r.equals("unlimited")) {
            return Double.POSITIVE_INFINITY;
        }
        double unit = 1;
        String num = r;
        for (String[] u : new String[][] {{"gbit", "1e9"}, {"mbit", "1e6"}, {"kbit", "1e3"}}) {
            if (r.endsWith(u[0])) {
                unit = Double.parseDouble(u[1]);
                num = r.substring(0, r.length() - u[0].length());
            }
        }
        try {
            double v = Double.parseDouble(num) * unit;
            if (v > 0) {
                return v;
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new Main.UsageError("--bandwidth " + s + ": use e.g. 25gbit, 1gbit, 500mbit, a number of bit/s, or unlimited");
    }

    static Cpu parseCpu(String s) {
        String c = s.trim().toLowerCase(Locale.ROOT);
        try {
            if (c.equals("dedicated")) {
                return new Cpu.Dedicated();
            }
            if (c.startsWith("per-host:")) {
                return new Cpu.PerHost(Integer.parseInt(c.substring(9)));
            }
            if (c.startsWith("machine:")) {
                return new Cpu.OneMachine(Integer.parseInt(c.substring(8)));
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new Main.UsageError("--cpu " + s + ": use dedicated, per-host:C or machine:C");
    }

    static HostLayout parseLayout(String s) {
        return switch (s.trim().toLowerCase(Locale.ROOT)) {
            case "colocated" -> HostLayout.COLOCATED;
            case "frontend-host" -> HostLayout.FRONTEND_HOST;
            default -> throw new Main.UsageError("--layout " + s + ": use colocated or frontend-host");
        };
    }

    static Scenario.Routing parseRouting(String s) {
        return switch (s.trim().toLowerCase(Locale.ROOT)) {
            case "sampled" -> Scenario.Routing.SAMPLED;
            case "expected" -> Scenario.Routing.EXPECTED;
            default -> throw new Main.UsageError("--routing " + s + ": use sampled or expected");
        };
    }

    private static int positive(String v, String option) {
        try {
            int n = Integer.parseInt(v.trim());
            if (n >= 1) {
                return n;
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new Main.UsageError(option + " " + v + ": expected a whole number >= 1" + (option.equals("--hosts") ? " or auto" : " or per-worker"));
    }

    /** Each run's table, then the pooled one. */
    private int runPooled() {
        List<Calibration.Result> runs = new ArrayList<>();
        for (Path dir : calibrateRuns) {
            Path probe = dir.resolve("cost.json");
            if (!Files.isRegularFile(probe)) {
                throw new Main.UsageError("--calibrate-runs " + dir + ": no cost.json (the run's kernel probe) in it");
            }
            Calibration.Result r = calibration(dir.resolve("points.tsv"), CostModel.read(probe));
            System.out.println("run " + (runs.size() + 1) + ": " + dir);
            printRun(r);
            System.out.println();
            runs.add(r);
        }
        Calibration.Pooled pooled;
        try {
            pooled = Calibration.pool(runs);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--calibrate-runs: " + e.getMessage());
        }
        System.out.printf(Locale.ROOT, "pooled, %d runs: the mean of the runs' measurements against the mean of their predictions%n",
                pooled.runs());
        printTable(pooled.rows(), pooled.accepted());
        return 0;
    }

    private Calibration.Result calibration(Path file, CostModel costModel) {
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (IOException e) {
            throw new Main.UsageError("calibration points " + file + ": " + e.getMessage());
        }
        List<Calibration.Point> points = new ArrayList<>();
        int n = 0;
        for (String line : lines) {
            n++;
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            points.add(point(file, line, n, costModel));
        }
        return Calibration.run(points, costModel);
    }

    private static void printRun(Calibration.Result r) {
        PrintStream out = System.out;
        out.printf(Locale.ROOT, "fitted: frontend %.0f µs per layer + %.1f µs per token per layer besides its products; a message's software "
                + "%.0f µs + %.2f ns per byte of a core at each end%n", r.cost().frontendLayerSeconds() * 1e6, r.cost().frontendTokenSeconds() * 1e6,
                r.messageSeconds() * 1e6, r.byteSeconds() * 1e9);
        out.println("cost model: " + r.cost().source());
        printTable(r.rows(), r.accepted());
    }

    private static void printTable(List<Calibration.Row> rows, boolean accepted) {
        PrintStream out = System.out;
        out.println("| configuration | used for | measured tokens/s | predicted tokens/s | predicted step ms | error |");
        out.println("| --- | --- | ---: | ---: | ---: | ---: |");
        for (Calibration.Row row : rows) {
            Calibration.Point p = row.point();
            String use = switch (p.use()) {
                case FIT_FRONTEND -> "fit (frontend)";
                case FIT_MESSAGE -> "fit (message)";
                case PREDICT -> "prediction";
            };
            out.printf(Locale.ROOT, "| %s | %s | %.1f | %.1f | %.1f | %+.1f%%%s |%n", p.name(), use, p.measuredTokensPerSecond(),
                    row.predictedTokensPerSecond(), row.predictedStepSeconds() * 1e3, 100 * row.error(),
                    p.use() == Calibration.Use.PREDICT && !row.accepted() ? " ✗" : "");
        }
        long predicted = rows.stream().filter(x -> x.point().use() == Calibration.Use.PREDICT).count();
        long within = rows.stream().filter(x -> x.point().use() == Calibration.Use.PREDICT && x.accepted()).count();
        out.printf(Locale.ROOT, "%d of %d predictions within %.0f%%: model %s%n", within, predicted, 100 * Calibration.TOLERANCE,
                accepted ? "accepted" : "NOT accepted");
    }

    private Calibration.Point point(Path file, String line, int n, CostModel costModel) {
        String[] f = line.split("\t");
        String where = file + " line " + n;
        if (f.length < 11) {
            throw new Main.UsageError(where + ": expected 11 tab-separated fields (name, use, model, workers, layout, policy, overlap, batch, "
                    + "latency_us, bandwidth, tokens/s), then optional key=value fields, got " + f.length);
        }
        Calibration.Use use = switch (f[1].trim()) {
            case "fit-frontend" -> Calibration.Use.FIT_FRONTEND;
            case "fit-message" -> Calibration.Use.FIT_MESSAGE;
            case "predict" -> Calibration.Use.PREDICT;
            default -> throw new Main.UsageError(where + ": use '" + f[1] + "' is not fit-frontend, fit-message or predict");
        };
        Path loadFile = null;
        int redundant = 0;
        Scenario.Workload workload = Scenario.Workload.DECODE;
        try {
            for (int i = 11; i < f.length; i++) {
                String field = f[i].trim();
                int eq = field.indexOf('=');
                String value = eq < 0 ? "" : field.substring(eq + 1).trim();
                switch (eq < 0 ? field : field.substring(0, eq).trim()) {
                    // relative to the points file, so that a run's directory can move
                    case "load" -> loadFile = file.toAbsolutePath().getParent().resolve(value);
                    case "redundant" -> redundant = Integer.parseInt(value);
                    case "workload" -> workload = switch (value) {
                        case "decode" -> Scenario.Workload.DECODE;
                        case "expert-layers" -> Scenario.Workload.EXPERT_LAYERS;
                        default -> throw new IllegalArgumentException("workload '" + value + "' is not decode or expert-layers");
                    };
                    default -> throw new IllegalArgumentException("'" + field
                            + "' is not load=FILE, redundant=N or workload=decode|expert-layers");
                }
            }
            ModelShape m = shape(f[2].trim(), WeightFormat.parse(expertDtype));
            int w = Integer.parseInt(f[3].trim());
            HostLayout hl = parseLayout(f[4]);
            PlacementChoice pc = PlacementChoice.parse(f[5].trim(), redundant);
            boolean ov = f[6].trim().equals("on");
            int b = Integer.parseInt(f[7].trim());
            Network net = new Network(Double.parseDouble(f[8]) * 1e-6, parseRate(f[9]), 0, 0, 0, parseWire(wireDtype));
            int h = w == 0 ? 1 : hl == HostLayout.FRONTEND_HOST ? w + 1 : 1;
            Cluster cl = new Cluster(w, h, 1, b, ov, frontendThreads, workerThreads, parseCpu(cpu), hl);
            ExpertPopularity pop = loadFile == null ? ExpertPopularity.uniform(m.layers(), m.experts()) : readLoad(loadFile, m);
            Scenario s = new Scenario(m, costModel, net, cl, pop, w == 0 ? null : pc.place(m, w, pop), Scenario.Routing.SAMPLED, steps, seed,
                    workload);
            return new Calibration.Point(f[0], use, s, Double.parseDouble(f[10]));
        } catch (IllegalArgumentException | UncheckedIOException e) {
            throw new Main.UsageError(where + ": " + e.getMessage());
        }
    }
}
