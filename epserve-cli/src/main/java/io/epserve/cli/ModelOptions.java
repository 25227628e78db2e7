package io.epserve.cli;

import io.epserve.format.gguf.GgufModel;
import io.epserve.model.KvDtype;
import io.epserve.model.KvOptions;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.ModelExperts;
import io.epserve.model.ModelWeights;
import io.epserve.model.MoeTransformer;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertCost;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.moe.PlacementControl;
import io.epserve.moe.Rebalancer;
import io.epserve.rpc.ExpertTopology;
import io.epserve.rpc.Transport;
import io.epserve.rpc.FrontendState;
import io.epserve.rpc.WorkerSecurity;
import io.epserve.rpc.v1.WireDType;
import io.epserve.tensor.DType;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Locale;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** Options every model-running command shares: the model, the router, and where the experts run. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR|FILE.gguf",
            description = "Hugging Face model directory (config.json + *.safetensors + tokenizer.json), or a GGUF file "
                    + "(llama.cpp's format; split files NAME-00001-of-0000N.gguf, or a folder holding one GGUF model). "
                    + "Default: the built-in demo model (random weights, its text is noise), written to the cache on first use.")
    Path model;

    @Option(names = "--router", paramLabel = "KIND", defaultValue = "learned",
            description = "Router of the sparse layers: learned (the checkpoint's gate, default) or hash "
                    + "(expert = hash(token id) mod E with a fixed seed, an experiment: a model trained with a learned router produces worse text).")
    String router;

    @Option(names = "--no-validate", description = "Skip the scan of all weights for NaN/Inf at load.")
    boolean noValidate;

    @Option(names = "--demo", hidden = true, defaultValue = "standard", description = "Demo model size: standard or tiny (tests).")
    String demo;

    @Option(names = "--workers", split = ",", paramLabel = "HOST:PORT",
            description = "Remote expert workers (started with `epserve worker --model` on the same model): the routed experts "
                    + "run there, dispatched over gRPC.")
    List<String> workers;

    @Mixin
    WorkerSecurityOptions workerSecurity;

    @Option(names = "--ep", paramLabel = "N", description = "Run the routed experts on N in-process expert workers "
            + "(default: one; serve: 4; or the remote --workers).")
    Integer ep;

    @Option(names = "--policy", defaultValue = "contiguous", paramLabel = "POLICY",
            description = "Expert placement over workers: contiguous (default), round-robin, replicated (every worker "
                    + "holds every expert; each step spreads each expert's tokens over its replicas by load: balanced, at "
                    + "data-parallel memory cost), or balanced (hot experts get replicas within --redundant-experts slots per "
                    + "worker, packed by observed load; re-placed live with --rebalance-every / --rebalance-below or "
                    + "POST /v1/epserve/placement/rebalance).")
    String policy;

    @Option(names = "--overlap", description = "Two-batch overlap: split each step into two micro-batches so that one's "
            + "expert dispatch is in flight while the other computes attention.")
    boolean overlap;

    @Option(names = "--worker-timeout", defaultValue = "10000", paramLabel = "MS",
            description = "Deadline of every call to a remote worker, in ms (default ${DEFAULT-VALUE}).")
    long workerTimeoutMs;

    @Option(names = "--worker-connect-timeout", defaultValue = "30000", paramLabel = "MS",
            description = "How long start-up waits for each remote worker's first answer, in ms (default ${DEFAULT-VALUE}).")
    long workerConnectMs;

    @Option(names = "--worker-load-timeout", defaultValue = "300", paramLabel = "SECONDS",
            description = "How long a remote worker may take to load (map and check) its experts (default ${DEFAULT-VALUE}).")
    long workerLoadSeconds;

    @Option(names = "--wire-dtype", defaultValue = "f32", paramLabel = "DTYPE",
            description = "Hidden states on the wire to remote workers: f32 (default; same numbers as in-process) or bf16 "
                    + "(half the bytes, rounds the experts' inputs and outputs to bfloat16).")
    String wireDtype;

    @Option(names = "--transport", defaultValue = "auto", paramLabel = "KIND",
            description = "How each step's tokens reach remote workers: auto (default: over shared memory with workers on this "
                    + "host, gRPC with the others), grpc, or shm (shared memory with every worker, else an error). gRPC always "
                    + "carries the control calls; $EPSERVE_SHM_DIR (default /dev/shm) holds the ring files.")
    String transport;

    @Option(names = "--expert-shards", defaultValue = "1", paramLabel = "K",
            description = "Split each expert's intermediate dimension into K slices held by K different in-process "
                    + "workers (needs --ep >= K); their partial sums add up to the expert's output (default ${DEFAULT-VALUE}).")
    int expertShards;

    @Option(names = "--expert-dtype", paramLabel = "DTYPE",
            description = "Routed experts in q8_0, q4_0, q4_k (GGUF block quantization), bf16, f16 or f32, converted once from "
                    + "the checkpoint into <model>/.epserve-cache (else $EPSERVE_CACHE) and mapped from there by every process. "
                    + "With remote --workers, give the workers the same --expert-dtype: each maps only its own experts from "
                    + "its own cache (building it when missing). Attention, dense layers and shared experts stay as stored. Default: as stored.")
    String expertDtype;

    @Option(names = "--kv-dtype", defaultValue = "f32", paramLabel = "DTYPE",
            description = "Element type of the KV cache: f32 (default; attention reads exactly the keys and values the model "
                    + "computed) or bf16 (half the memory, so twice the cached tokens for the same --kv-memory; keys and "
                    + "values rounded to bfloat16).")
    String kvDtype;

    @Option(names = "--mla-cache", defaultValue = "compressed", paramLabel = "KIND",
            description = "MLA models (DeepSeek): compressed (default; caches kv_lora_rank + qk_rope_head_dim per token and "
                    + "layer, as DeepSeek's inference does) or expanded (per-head keys and values).")
    String mlaCache;

    @Option(names = "--stats", description = "Print dispatch statistics at the end (per worker: calls, bytes, compute "
            + "and round-trip time; per layer and expert: tokens routed) to stderr.")
    boolean stats;

    Path resolveModelDir(TerminalProgress progress) {
        if (model != null) {
            if (!Files.isDirectory(model) && !GgufModel.isGguf(model)) {
                throw new Main.UsageError("--model " + model + ": no such directory or .gguf file");
            }
            return model;
        }
        return DemoModel.ensure(demoSpec(demo), DemoModel.defaultCacheDir(), progress);
    }

    /** How the KV cache stores keys and values (--kv-dtype, --mla-cache). */
    KvOptions kvOptions() {
        KvDtype dtype;
        try {
            dtype = KvDtype.parse(kvDtype);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--kv-dtype must be f32 or bf16, not '" + kvDtype + "'");
        }
        KvOptions.MlaCache mla = switch (mlaCache.toLowerCase(Locale.ROOT)) {
            case "compressed" -> KvOptions.MlaCache.COMPRESSED;
            case "expanded" -> KvOptions.MlaCache.EXPANDED;
            default -> throw new Main.UsageError("--mla-cache must be compressed or expanded, not '" + mlaCache + "'");
        };
        return new KvOptions(dtype, mla);
    }

    MoeTransformer.RouterChoice routerChoice() {
        return switch (router) {
            case "learned" -> MoeTransformer.RouterChoice.LEARNED;
            case "hash" -> MoeTransformer.RouterChoice.HASH;
            default -> throw new Main.UsageError("--router must be learned or hash, not '" + router + "'");
        };
    }

    ExpertPlacement.Policy placementPolicy() {
        return parsePolicy(policy);
    }

    /** The placement policy named on a command line (every command that takes --policy). */
    static ExpertPlacement.Policy parsePolicy(String name) {
        return switch (name.toLowerCase(Locale.ROOT)) {
            case "contiguous" -> ExpertPlacement.Policy.CONTIGUOUS;
            case "round-robin", "round_robin", "roundrobin" -> ExpertPlacement.Policy.ROUND_ROBIN;
            case "replicated" -> ExpertPlacement.Policy.REPLICATED;
            case "balanced" -> ExpertPlacement.Policy.BALANCED;
            default -> throw new Main.UsageError("--policy must be contiguous, round-robin, replicated or balanced, not '" + name + "'");
        };
    }

    /** The built-in demo model's size named by the hidden --demo option. */
    static DemoModel.Spec demoSpec(String name) {
        return switch (name) {
            case "standard" -> DemoModel.STANDARD;
            case "tiny" -> DemoModel.TINY;
            default -> throw new Main.UsageError("--demo must be standard or tiny, not '" + name + "'");
        };
    }

    @Option(names = "--redundant-experts", defaultValue = "0", paramLabel = "R",
            description = "With --policy balanced: extra expert slots per worker and layer, for replicas of hot experts (default ${DEFAULT-VALUE}).")
    int redundantExperts;

    @Option(names = "--load-window", defaultValue = "1000", paramLabel = "STEPS",
            description = "Steps of routed tokens the frontend keeps per (layer, expert) for balancing and GET /v1/epserve/load (default ${DEFAULT-VALUE}).")
    int loadWindow;

    @Option(names = "--rebalance-every", defaultValue = "0", paramLabel = "STEPS",
            description = "Re-place the experts (balanced, from the load window) every STEPS steps, live (default ${DEFAULT-VALUE}: never on a timer).")
    long rebalanceEvery;

    @Option(names = "--rebalance-below", defaultValue = "0", paramLabel = "B",
            description = "Re-place the experts when a layer's balancedness (mean / max per-worker load) falls below B, 0..1 "
                    + "(default ${DEFAULT-VALUE}: never on it).")
    double rebalanceBelow;

    @Option(names = "--expert-fixed-cost", defaultValue = "0", paramLabel = "F",
            description = "With --policy balanced: what running one expert costs a worker besides its tokens, in tokens' worth "
                    + "(streaming its weights, setting it up); the policy then packs the workers' time, not their tokens alone, "
                    + "and gives a hot expert a replica only where that shortens the busiest worker. `epserve bench balance` "
                    + "prints this machine's figure (its cost: line). Default ${DEFAULT-VALUE}: tokens alone.")
    double expertFixedCost;

    @Option(names = "--worker-hosts", split = ",", paramLabel = "HOST",
            description = "Host label of each --workers address, in order: the balanced policy keeps each group of experts' "
                    + "replicas on one host (hierarchical placement).")
    List<String> workerHosts;

    /** Where the routed experts run, validated once: the one value every command turns into a dispatcher. */
    ExpertTopology topology() {
        ExpertPlacement.Policy pol = placementPolicy();
        boolean remote = workers != null && !workers.isEmpty();
        if (remote && ep != null) {
            throw new Main.UsageError("give either --workers (remote) or --ep (in-process), not both");
        }
        WireDType wire = switch (wireDtype) {
            case "f32" -> WireDType.WIRE_DTYPE_F32;
            case "bf16" -> WireDType.WIRE_DTYPE_BF16;
            default -> throw new Main.UsageError("--wire-dtype must be f32 or bf16, not '" + wireDtype + "'");
        };
        if (workerTimeoutMs < 1) {
            throw new Main.UsageError("--worker-timeout must be at least 1 ms");
        }
        if (workerConnectMs < 1) {
            throw new Main.UsageError("--worker-connect-timeout must be at least 1 ms");
        }
        if (workerLoadSeconds < 1) {
            throw new Main.UsageError("--worker-load-timeout must be at least 1 s");
        }
        if (workerHosts != null && (!remote || workerHosts.size() != workers.size())) {
            throw new Main.UsageError("--worker-hosts needs one host label per --workers address");
        }
        if (!(expertFixedCost >= 0) || Double.isInfinite(expertFixedCost)) {
            throw new Main.UsageError("--expert-fixed-cost must be a finite number >= 0 (tokens' worth), got " + expertFixedCost);
        }
        if (expertFixedCost > 0 && pol != ExpertPlacement.Policy.BALANCED) {
            throw new Main.UsageError("--expert-fixed-cost needs --policy balanced");
        }
        try {
            GrpcExpertDispatcher.Config config = GrpcExpertDispatcher.Config.defaults()
                    .withDeadline(Duration.ofMillis(workerTimeoutMs)).withConnectDeadline(Duration.ofMillis(workerConnectMs))
                    .withAssignDeadline(Duration.ofSeconds(workerLoadSeconds))
                    .withWireDType(wire).withExpertDType(expertDType()).withSecurity(remote ? workerSecurity.security() : WorkerSecurity.NONE)
                    .withTransport(transport());
            ExpertTopology.Workers w = remote ? new ExpertTopology.Remote(workers) : new ExpertTopology.InProcess(ep == null ? 1 : ep);
            return new ExpertTopology(w, pol, redundantExperts, expertShards, loadWindow, config);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage());
        }
    }

    /** --transport, validated. */
    Transport transport() {
        try {
            return Transport.parse(transport, "--transport");
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage());
        }
    }

    /** The host label of each --workers address (--worker-hosts), empty without. */
    Map<String, String> workerHostLabels() {
        Map<String, String> m = new LinkedHashMap<>();
        if (workerHosts != null && workers != null) {
            for (int i = 0; i < Math.min(workers.size(), workerHosts.size()); i++) {
                m.put(workers.get(i), workerHosts.get(i));
            }
        }
        return m;
    }

    /**
     * Where the routed experts run (one in-process worker, N in-process workers, or remote
     * workers), for the model's loader: the topology's dispatcher over the model's experts. Here,
     * where both are at hand, the model meets the workers: in-process workers compute with the
     * frontend's weights, and a frontend whose remote workers fail computes every expert itself
     * from the same files they map ({@link ModelExperts#frontendDispatcher}).
     *
     * @param resume a frontend's saved state to resume (serve --state-dir), or null
     */
    private LoadedModel.Dispatchers dispatchers(FrontendState.Snapshot resume) {
        ExpertTopology topology = topology();
        return new LoadedModel.Dispatchers() {
            @Override
            public ExpertDispatcher create(Path dir, ModelConfig cfg, ModelWeights w) {
                return topology.dispatcher(dir, cfg.moeShape(), w,
                        () -> ModelExperts.frontendDispatcher(dir, cfg, w, topology.remote().expertDType()), System.err, resume);
            }

            @Override
            public boolean local() {
                return topology.local();
            }
        };
    }

    /**
     * The placement control loop over a loaded model's dispatcher (--rebalance-every,
     * --rebalance-below, on demand), started; null when its dispatcher cannot change placement.
     */
    Rebalancer rebalancer(LoadedModel m, Rebalancer.Listener listener) {
        if (!(m.dispatcher() instanceof PlacementControl control)) {
            return null;
        }
        return rebalancer(control, listener);
    }

    /**
     * The placement control loop over {@code control} (a membership, which knows the workers'
     * host labels as workers come and go, or the dispatcher itself), started.
     */
    Rebalancer rebalancer(PlacementControl control, Rebalancer.Listener listener) {
        List<String> hosts = control.hostLabels(control.placement().workers()) != null ? null : workerHosts;
        try {
            return new Rebalancer(control, new Rebalancer.Settings(redundantExperts, hosts, rebalanceEvery, rebalanceBelow, 200,
                    new ExpertCost(expertFixedCost)), listener).start();
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage());
        }
    }

    /** --expert-dtype, checked; null when not given (experts as stored). */
    DType expertDType() {
        if (expertDtype == null) {
            return null;
        }
        DType t;
        try {
            t = DType.parse(expertDtype);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--expert-dtype: " + e.getMessage());
        }
        return t;
    }

    LoadedModel load(Path dir, TerminalProgress progress) {
        return load(dir, progress, null);
    }

    /** As {@link #load(Path, TerminalProgress)}, resuming a frontend's saved state (serve --state-dir), or not when null. */
    LoadedModel load(Path dir, TerminalProgress progress, FrontendState.Snapshot resume) {
        LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults().withRouter(routerChoice()).withValidate(!noValidate)
                .withProgress(progress).withDispatchers(dispatchers(resume)).withExpertDType(expertDType())
                .withKv(kvOptions()));
        m.transformer().setOverlap(overlap);
        return m;
    }

    /** With --stats: the dispatcher's counters, to stderr. */
    void printStats(LoadedModel m, PrintStream err) {
        if (!stats) {
            return;
        }
        List<String> lines = switch (m.dispatcher()) {
            case GrpcExpertDispatcher g -> g.stats().describe();
            case InProcessDispatcher d -> d.describeStats();
            default -> List.of("no statistics for " + m.dispatcher().getClass().getSimpleName());
        };
        err.println("dispatch statistics:");
        lines.forEach(err::println);
        err.flush();
    }
}
