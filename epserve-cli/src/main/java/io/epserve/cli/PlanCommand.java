package io.epserve.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.gguf.GgufModel;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.plan.ByteSize;
import io.epserve.model.plan.CapacityPlan;
import io.epserve.model.plan.CapacityPlanner;
import io.epserve.model.plan.PlanModel;
import io.epserve.model.plan.PlanOptions;
import io.epserve.model.plan.PlanReport;
import io.epserve.model.plan.WeightFormat;
import io.epserve.moe.BalancedPlacement;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.server.ExpertLoadJson;
import java.util.List;
import java.io.IOException;
import java.io.PrintWriter;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.stream.IntStream;

/** {@code epserve plan}: what fits where, from config.json alone. */
@Command(name = "plan", mixinStandardHelpOptions = true,
        description = {"Plan memory from a model's config.json alone (no weights needed): total and "
                + "active parameters, the expert placement, the bytes of each expert worker and "
                + "of the frontend, whether each fits the memory per worker, and the smallest "
                + "worker count that does.",
                "Workers hold routed experts (replicas counted fully; with --expert-shards K, "
                + "each expert's intermediate dimension is cut in K slices on K consecutive "
                + "workers). The frontend holds embeddings, lm_head, attention, norms, routers, "
                + "dense layers, shared experts and the KV cache. Every process is allowed a "
                + "fixed --overhead beside its weights.",
                "With --json: one object with total_params, active_params, workers [{bytes, "
                + "experts, shards, layers, ...}], frontend {bytes, components}, fits, "
                + "min_workers (null when no count fits) and more."})
final class PlanCommand implements Callable<Integer> {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Option(names = "--model", paramLabel = "DIR|config.json|FILE.gguf",
            description = "Model directory, its config.json, or a GGUF file (its metadata). Default: the built-in demo model's config (nothing is written).")
    Path model;

    @Option(names = "--workers", paramLabel = "N", defaultValue = "1", description = "Expert workers (default ${DEFAULT-VALUE}).")
    int workers;

    @Option(names = "--memory-per-worker", paramLabel = "SIZE",
            description = "Memory of each worker and of the frontend: bytes, or e.g. 24GiB, 80GB, 512MiB. Default: this machine's physical memory.")
    String memoryPerWorker;

    @Option(names = "--expert-dtype", paramLabel = "DTYPE", defaultValue = "bf16",
            description = "Routed experts: bf16, f16, f32, q8_0, q4_0 or q4_k (GGUF blocks), or mxfp4 (gpt-oss as shipped; default ${DEFAULT-VALUE}).")
    String expertDtype;

    @Option(names = "--dtype", paramLabel = "DTYPE", defaultValue = "bf16",
            description = "Attention, dense, shared-expert, router and embedding weights: bf16, f16 or f32 (default ${DEFAULT-VALUE}).")
    String dtype;

    @Option(names = "--expert-shards", paramLabel = "K", defaultValue = "1",
            description = "Cut each expert's intermediate dimension in K slices on K workers (default ${DEFAULT-VALUE}).")
    int expertShards;

    @Option(names = "--kv-tokens", paramLabel = "T", defaultValue = "4096",
            description = "Tokens of KV cache the frontend holds, all sequences together (default ${DEFAULT-VALUE}).")
    long kvTokens;

    @Option(names = "--kv-dtype", paramLabel = "DTYPE", defaultValue = "f32",
            description = "Cached keys and values, as `serve --kv-dtype` stores them: f32 (default) or bf16. "
                    + "MLA models are counted with the compressed latent cache the engine keeps.")
    String kvDtype;

    @Option(names = "--policy", paramLabel = "POLICY", defaultValue = "contiguous",
            description = "Expert placement: contiguous, round-robin, replicated or balanced (from --load; default ${DEFAULT-VALUE}).")
    String policy;

    @Option(names = "--overhead", paramLabel = "SIZE", defaultValue = "512MiB",
            description = "Allowance per process beside weights and KV cache: JVM, kernel threads, activation arenas, wire buffers (default ${DEFAULT-VALUE}).")
    String overhead;

    @Option(names = "--json", description = "Print one JSON object (see above).")
    boolean json;

    @Option(names = "--load", paramLabel = "LOAD.json",
            description = "Routed tokens per (layer, expert), as GET /v1/epserve/load returns them: "
                    + "{\"layers\": [{\"layer\": 0, \"tokens\": [n_0, ...]}, ...]} (a sparse layer that is absent counts "
                    + "as uniform). Prints the placement and its balancedness (mean / max per-worker load) per sparse "
                    + "layer under that load; --json adds a top-level \"balancedness\" array, one number per sparse layer.")
    Path load;

    @Option(names = "--redundant-experts", paramLabel = "R", defaultValue = "0",
            description = "With --policy balanced: extra expert slots per worker and layer for replicas of hot experts (default ${DEFAULT-VALUE}).")
    int redundantExperts;

    @Override
    public Integer call() throws IOException {
        PlanModel m = loadModel();
        if (workers < 1) {
            throw new Main.UsageError("--workers must be at least 1, not " + workers);
        }
        if (expertShards < 1) {
            throw new Main.UsageError("--expert-shards must be at least 1, not " + expertShards);
        }
        if (expertShards > workers) {
            throw new Main.UsageError("--expert-shards " + expertShards + " needs at least as many workers (--workers is " + workers + ")");
        }
        if (kvTokens < 0) {
            throw new Main.UsageError("--kv-tokens must be 0 or more, not " + kvTokens);
        }
        boolean memoryGiven = memoryPerWorker != null;
        long memory = memoryGiven ? size("--memory-per-worker", memoryPerWorker) : physicalMemory();
        if (memory < 1) {
            throw new Main.UsageError("--memory-per-worker must be positive, not '" + memoryPerWorker + "'");
        }
        WeightFormat experts = format("--expert-dtype", expertDtype);
        WeightFormat weights = format("--dtype", dtype);
        if (weights.quantized()) {
            throw new Main.UsageError("--dtype must be bf16, f16 or f32, not '" + dtype + "' (quantized dtypes are for --expert-dtype)");
        }
        WeightFormat kv = format("--kv-dtype", kvDtype);
        if (kv != WeightFormat.F32 && kv != WeightFormat.BF16) {
            throw new Main.UsageError("--kv-dtype must be f32 or bf16 (what the engine stores), not '" + kvDtype + "'");
        }
        ExpertPlacement.Policy p = ModelOptions.parsePolicy(policy);
        PlanOptions o = new PlanOptions(workers, memory, weights, experts, expertShards, kvTokens, kv, p,
                size("--overhead", overhead));
        CapacityPlan plan;
        try {
            plan = CapacityPlanner.plan(m, o);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage() + optionHint(e.getMessage()));
        }
        if (redundantExperts < 0) {
            throw new Main.UsageError("--redundant-experts must be 0 or more, not " + redundantExperts);
        }
        if (redundantExperts > 0 && p != ExpertPlacement.Policy.BALANCED) {
            throw new Main.UsageError("--redundant-experts needs --policy balanced");
        }
        LoadPlacement lp = loadPlacement(m, p);
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            ObjectMapper mapper = new ObjectMapper();
            var node = PlanReport.json(plan);
            ((ObjectNode) node.get("options")).put("memory_per_worker_source", memoryGiven ? "option" : "physical memory of this machine");
            if (lp != null) {
                var root = (ObjectNode) node;
                var b = root.putArray("balancedness");
                for (double v : lp.balancedness()) {
                    b.add(v);
                }
                var lpNode = root.putObject("load_placement");
                lpNode.put("load", load == null ? "uniform" : load.toString());
                lpNode.put("redundant_experts", redundantExperts);
                lpNode.set("placement", ExpertLoadJson.placementJson(mapper, lp.placement(), null));
            }
            out.println(mapper.writerWithDefaultPrettyPrinter().writeValueAsString(node));
        } else {
            if (!memoryGiven) {
                out.println("(memory per worker: " + ByteSize.format(memory) + ", this machine's physical memory; set --memory-per-worker)");
            }
            PlanReport.text(plan).forEach(out::println);
            if (lp != null) {
                out.println();
                out.println("under " + (load == null ? "a uniform load" : "the load of " + load) + (redundantExperts > 0
                        ? " with " + redundantExperts + " redundant expert slot(s) per worker (memory above counts one replica per expert)" : "") + ":");
                lp.placement().describe().forEach(out::println);
                StringBuilder sb = new StringBuilder("balancedness (mean / max per-worker load) per sparse layer:");
                for (double v : lp.balancedness()) {
                    sb.append(String.format(Locale.ROOT, " %.3f", v));
                }
                out.println(sb);
            }
        }
        out.flush();
        return 0;
    }

    /** The placement the policy makes under the load, and its balancedness per sparse layer. */
    record LoadPlacement(ExpertPlacement placement, double[] balancedness) {}

    /** Null unless --load or --policy balanced asks for the placement under a load. */
    private LoadPlacement loadPlacement(PlanModel m, ExpertPlacement.Policy p) {
        if (load == null && p != ExpertPlacement.Policy.BALANCED) {
            return null;
        }
        var cfg = m.config();
        ExpertLoad l;
        if (load == null) {
            l = ExpertLoad.uniform(cfg.sparseLayers(), cfg.numExperts());
        } else {
            try {
                l = ExpertLoadJson.read(new ObjectMapper(), load, cfg.numExperts()).forModel(cfg.sparseLayers(), cfg.numExperts());
            } catch (IOException | IllegalArgumentException e) {
                throw new Main.UsageError("--load " + load + ": " + e.getMessage());
            }
        }
        List<String> names = IntStream.range(0, workers).mapToObj(i -> "worker-" + i).toList();
        ExpertPlacement placement = p == ExpertPlacement.Policy.BALANCED
                ? BalancedPlacement.place(l, names, redundantExperts, 0)
                : ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), names, p, 0);
        return new LoadPlacement(placement, placement.balancedness(l));
    }

    private PlanModel loadModel() {
        if (model == null) {
            return PlanModel.demo(DemoModel.STANDARD);
        }
        if (!Files.exists(model)) {
            throw new Main.UsageError("--model " + model + ": no such directory or file");
        }
        if (Files.isDirectory(model) && !Files.exists(model.resolve("config.json")) && !GgufModel.isGguf(model)) {
            throw new Main.UsageError("--model " + model + ": no config.json (nor a .gguf file) in that directory");
        }
        return PlanModel.load(model);
    }

    private static long size(String option, String value) {
        try {
            return ByteSize.parse(value);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(option + ": " + e.getMessage());
        }
    }

    private static WeightFormat format(String option, String value) {
        try {
            return WeightFormat.parse(value);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(option + ": " + e.getMessage());
        }
    }

    private static String optionHint(String message) {
        if (message.contains("shard")) {
            return " (--expert-shards)";
        }
        if (message.contains("blocks of")) {
            return " (--expert-dtype)";
        }
        return "";
    }

    private static long physicalMemory() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getTotalMemorySize();
        }
        throw new Main.UsageError("cannot read this machine's memory size; give --memory-per-worker");
    }
}
