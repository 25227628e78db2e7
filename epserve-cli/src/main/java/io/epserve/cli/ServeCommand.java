package io.epserve.cli;

import io.epserve.engine.Engine;
import io.epserve.engine.EngineConfig;
import io.epserve.engine.EngineStats;
import io.epserve.format.Checkpoint;
import io.epserve.format.gguf.GgufModel;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.plan.ByteSize;
import io.epserve.model.tokenizer.Tokenizer;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.rpc.GrpcExpertDispatcher;
import io.epserve.moe.PlacementControl;
import io.epserve.moe.Rebalancer;
import io.epserve.moe.PlacementControl;
import io.epserve.rpc.FrontendState;
import io.epserve.rpc.HostPort;
import io.epserve.rpc.Membership;
import io.epserve.rpc.MembershipServer;
import io.epserve.server.ApiKeys;
import io.epserve.server.EpServer;
import io.epserve.server.PlacementMetrics;
import io.epserve.server.ExpertLayout;
import io.epserve.server.Readiness;
import io.epserve.server.ServedModel;
import io.epserve.server.WorkerStatsSource;
import io.epserve.server.WorkerTable;
import java.io.PrintStream;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code epserve serve}: the OpenAI-compatible server over the continuous-batching engine. */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
                + "/v1/models; streaming with SSE), with Prometheus metrics at /metrics, /health and /ready, and a "
                + "live view of throughput, latency and expert load at /. Requests are batched continuously over "
                + "a paged KV cache; the routed experts run on --ep in-process expert workers (default 4) or on "
                + "remote --workers (`epserve worker`). Without --model, "
                + "serves the built-in demo model (as \"" + ServedModel.DEMO_NAME + "\"; its text is noise). "
                + "Prints the URLs once serving; runs until killed (SIGINT/SIGTERM: running requests get "
                + "--drain seconds to finish, then the server and engine close)."})
final class ServeCommand implements Callable<Integer> {
    static final int DEFAULT_EP = 4;
    /** Longest wait for the kernel warm-up before serving anyway. */
    static final Duration WARMUP_DEADLINE = Duration.ofSeconds(60);

    @Mixin
    ModelOptions model;

    @Option(names = "--host", defaultValue = EpServer.Config.DEFAULT_HOST,
            description = "Address to listen on (default ${DEFAULT-VALUE}; 0.0.0.0 for all interfaces).")
    String host;

    @Option(names = "--port", defaultValue = "" + EpServer.Config.DEFAULT_PORT,
            description = "Port to listen on (default ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--kv-memory", paramLabel = "SIZE", defaultValue = "256MiB",
            description = "Memory of the paged KV cache, e.g. 512MiB, 4GiB (default ${DEFAULT-VALUE}); "
                    + "requests beyond it wait, running ones are preempted and recomputed.")
    String kvMemory;

    @Option(names = "--block-size", paramLabel = "TOKENS", defaultValue = "" + EngineConfig.DEFAULT_BLOCK_SIZE,
            description = "Positions per KV cache block (default ${DEFAULT-VALUE}).")
    int blockSize;

    @Option(names = "--max-batch-tokens", paramLabel = "N", defaultValue = "" + EngineConfig.DEFAULT_MAX_BATCH_TOKENS,
            description = "Tokens one step runs at most: decodes (1 each) plus prefill chunks (default ${DEFAULT-VALUE}).")
    int maxBatchTokens;

    @Option(names = "--max-running", paramLabel = "N", defaultValue = "" + EngineConfig.DEFAULT_MAX_RUNNING,
            description = "Sequences in the running batch at most (default ${DEFAULT-VALUE}).")
    int maxRunning;

    @Option(names = "--max-waiting", paramLabel = "N", defaultValue = "" + EngineConfig.DEFAULT_MAX_WAITING,
            description = "Requests that may wait for a batch slot; beyond it requests get HTTP 429 with Retry-After "
                    + "(default ${DEFAULT-VALUE}).")
    int maxWaiting;

    @Option(names = "--no-prefix-caching", negatable = false,
            description = "Compute every prompt in full instead of reusing the KV blocks of a prompt prefix that an earlier "
                    + "request computed (reuse is on by default and changes no output).")
    boolean noPrefixCaching;

    @Option(names = "--max-model-len", paramLabel = "TOKENS",
            description = "Prompt + generated tokens one request may hold. Default: the model's context length, "
                    + "or what the KV cache holds if less.")
    Integer maxModelLen;

    @Option(names = "--served-model-name", paramLabel = "NAME",
            description = "The model's name in the API. Default: the model directory's name (the demo: "
                    + ServedModel.DEMO_NAME + ").")
    String servedName;

    @Option(names = "--drain", paramLabel = "SECONDS", defaultValue = "5",
            description = "On shutdown, how long running requests may finish before they are cancelled (default ${DEFAULT-VALUE}).")
    double drainSeconds;

    @Option(names = "--api-key", paramLabel = "KEY",
            description = "An API key the server accepts as 'Authorization: Bearer KEY' (repeatable). With any key set, "
                    + "every /v1 endpoint (and /metrics and the live view, unless --metrics-listen moves them) asks for one; "
                    + "/health and /ready never do. Keys on the command line show in the process list: prefer --api-key-file.")
    List<String> apiKeys = new ArrayList<>();

    @Option(names = "--api-key-file", paramLabel = "FILE",
            description = "A file of API keys, one per line (blank lines and lines starting with # are skipped).")
    Path apiKeyFile;

    @Option(names = "--metrics-listen", paramLabel = "HOST:PORT",
            description = "Serve /metrics and the live view on this address (without API keys), not on the API port; "
                    + "e.g. 127.0.0.1:9090. /health and /ready answer on both.")
    String metricsListen;

    @Option(names = "--max-connections", paramLabel = "N", defaultValue = "" + EpServer.Config.DEFAULT_MAX_CONNECTIONS,
            description = "Open HTTP connections at most; one more is answered 503 and closed (default ${DEFAULT-VALUE}).")
    int maxConnections;

    @Option(names = "--max-header-bytes", paramLabel = "BYTES", defaultValue = "" + EpServer.Config.DEFAULT_MAX_HEADER_BYTES,
            description = "Largest request line (else 414) and largest header block (else 431) (default ${DEFAULT-VALUE}).")
    int maxHeaderBytes;

    @Option(names = "--header-timeout", paramLabel = "SECONDS", defaultValue = "10",
            description = "Time a client has from a request's first byte to the end of its headers; slower ones get 408 "
                    + "and are closed (default ${DEFAULT-VALUE}).")
    double headerTimeoutSeconds;

    @Option(names = "--idle-timeout", paramLabel = "SECONDS", defaultValue = "60",
            description = "A connection with no request in progress is closed after this long without traffic "
                    + "(default ${DEFAULT-VALUE}).")
    double idleTimeoutSeconds;

    @Option(names = "--membership-listen", paramLabel = "HOST:PORT",
            description = "With remote --workers: accept more workers while serving (`epserve worker --join HOST:PORT`) and "
                    + "let workers leave (a worker sent SIGTERM drains). Secured as the workers are (--worker-secret-file, "
                    + "--worker-tls-*); without either, loopback only. Port 0 picks a free one (printed).")
    String membershipListen;

    @Option(names = "--state-dir", paramLabel = "DIR",
            description = "With remote --workers: keep this frontend's id, placement (epoch, workers, replicas) and load window in "
                    + "DIR/" + FrontendState.FILE + " (at every placement change and every " + STATE_SAVE_SECONDS + " s), so a "
                    + "restarted frontend resumes the same placement epoch and its workers reattach without mapping their experts "
                    + "again. A corrupt file is an error naming it (delete it to start fresh).")
    Path stateDir;

    @Option(names = "--worker-check-interval", paramLabel = "MS", defaultValue = "1000",
            description = "How often each remote worker is checked (Info, within --worker-timeout but at most 5 s) "
                    + "(default ${DEFAULT-VALUE}).")
    long workerCheckMs;

    @Option(names = "--worker-dead-after", paramLabel = "N", defaultValue = "" + Membership.Settings.DEFAULT_MISSES,
            description = "Missed checks in a row after which a worker is dead and its experts are placed on the others "
                    + "(a worker that refuses connections: after 2 s) (default ${DEFAULT-VALUE}).")
    int workerDeadAfter;

    /** How often --state-dir is written besides at each placement change (the load window moves). */
    static final int STATE_SAVE_SECONDS = 10;

    /** A running server: its engine, model and URLs; closing it shuts all down in order. */
    record Running(EpServer server, Engine engine, LoadedModel model, ServedModel served, Runnable atClose) implements AutoCloseable {
        URI base() {
            return server.baseUri();
        }

        @Override
        public void close() {
            server.close(); // stops taking requests, drains, closes connections
            engine.close();
            atClose.run();
            model.close();
        }
    }

    @Override
    public Integer call() throws InterruptedException {
        Running running = start(System.out, TerminalProgress.forStderr());
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(Thread.ofPlatform().name("epserve-shutdown").unstarted(() -> {
            System.err.println("epserve: shutting down (draining running requests for up to " + drainSeconds + " s)");
            running.close();
            stopped.countDown();
        }));
        stopped.await();
        return 0;
    }

    /** Binds the port, loads the model, starts the engine and serves; prints the URLs to {@code out}. */
    Running start(PrintStream out, TerminalProgress progress) {
        EngineConfig engineConfig = engineConfig();
        if (maxModelLen != null && maxModelLen < 2) {
            throw new Main.UsageError("--max-model-len must be at least 2, got " + maxModelLen);
        }
        // Bind first: a busy port fails at once, and /health answers (and /ready says 503) while the model loads.
        EpServer server = serverBuilder().build().start();
        LoadedModel loaded = null;
        Engine engine = null;
        Membership membership = null;
        MembershipServer membershipServer = null;
        StateSaver saver = null;
        try {
            Path dir = model.resolveModelDir(progress);
            if (!Files.isRegularFile(dir.resolve("tokenizer.json")) && !GgufModel.isGguf(dir)) {
                throw new Main.UsageError(dir + " has no tokenizer.json: the server needs the model's tokenizer");
            }
            Tokenizer tokenizer = Tokenizer.load(dir);
            boolean remote = model.workers != null && !model.workers.isEmpty();
            if (!remote) {
                // serve's default: the experts spread over 4 in-process workers (or one per expert if fewer)
                int experts = ModelConfig.from(Checkpoint.readConfig(dir)).numExperts();
                if (model.ep == null) {
                    model.ep = Math.max(1, Math.min(DEFAULT_EP, experts));
                } else if (model.ep > experts) {
                    throw new Main.UsageError("--ep " + model.ep + " is more than the model's " + experts + " routed experts per layer");
                }
            }
            if (!remote && (membershipListen != null || stateDir != null)) {
                throw new Main.UsageError((membershipListen != null ? "--membership-listen" : "--state-dir") + " needs remote --workers");
            }
            if (workerCheckMs < 1 || workerDeadAfter < 1) {
                throw new Main.UsageError("--worker-check-interval and --worker-dead-after must be at least 1");
            }
            FrontendState state = stateDir == null ? null : new FrontendState(stateDir);
            FrontendState.Snapshot resume = state == null ? null : state.load();
            loaded = model.load(dir, progress, resume);
            ExpertPlacement placement;
            WorkerStatsSource workerStats = null;
            PlacementControl control = null;
            switch (loaded.dispatcher()) {
                case InProcessDispatcher d -> placement = d.placement();
                case GrpcExpertDispatcher g -> {
                    placement = g.placement();
                    workerStats = () -> g.stats().workers().stream().map(w -> new WorkerStatsSource.WorkerStats(w.address(),
                            w.calls(), w.bytesSent(), w.bytesReceived(), w.computeNanos(), w.roundTripNanos(), w.failures())).toList();
                    Membership.Settings checks = Membership.Settings.defaults(g.config().deadline())
                            .withInterval(Duration.ofMillis(workerCheckMs)).withDeadAfterMisses(workerDeadAfter);
                    Map<String, String> hosts = new LinkedHashMap<>(model.workerHostLabels());
                    if (resume != null) {
                        hosts.putAll(resume.hosts());
                    }
                    membership = new Membership(g, model.topology().placer(), checks, hosts, System.err);
                    Membership m = membership;
                    if (state != null) {
                        saver = new StateSaver(state, m, g);
                    }
                    m.start();
                    control = m;
                    server.readiness(new Readiness() {
                        @Override
                        public String notReadyReason() {
                            return m.notReadyReason();
                        }

                        @Override
                        public Map<String, Boolean> workersUp() {
                            return m.up();
                        }

                        @Override
                        public boolean servesWhileWorkersDown() {
                            return g.failoverStats() != null;
                        }
                    });
                    server.workers(() -> table(m.view()));
                    if (membershipListen != null) {
                        HostPort listen;
                        try {
                            listen = HostPort.parse(membershipListen, "--membership-listen");
                        } catch (IllegalArgumentException e) {
                            throw new Main.UsageError(e.getMessage());
                        }
                        membershipServer = MembershipServer.start(listen, model.workerSecurity.security(), m);
                    }
                }
                default -> throw new IllegalStateException("unexpected dispatcher " + loaded.dispatcher().getClass().getName());
            }
            int workers = placement.workerCount();
            engine = new Engine(loaded.transformer(), engineConfig).start();
            EngineStats stats = engine.stats();
            int kvTokens = stats.kvBlocksTotal() * stats.kvBlockSize();
            int limit = Math.min(loaded.config().maxPositions(), kvTokens);
            if (maxModelLen != null) {
                if (maxModelLen > loaded.config().maxPositions()) {
                    throw new Main.UsageError("--max-model-len " + maxModelLen + " is more than the model's context length "
                            + loaded.config().maxPositions());
                }
                limit = maxModelLen;
            }
            ServedModel served = ServedModel.fromDirectory(dir, loaded.config(), tokenizer, ExpertLayout.of(placement),
                    servedName, limit);
            // before serve(): /ready says 503 until the first client's request would find the kernels compiled
            out.println("epserve: " + KernelWarmup.run(engine, loaded.config().vocabSize(), limit, WARMUP_DEADLINE));
            server.serve(served, engine, workerStats, ((PlacementControl) loaded.dispatcher()).routedTokens());
            PlacementMetrics placementMetrics = new PlacementMetrics(server.metrics().registry());
            Rebalancer rebalancer = control != null ? model.rebalancer(control, placementMetrics::observe)
                    : model.rebalancer(loaded, placementMetrics::observe);
            if (rebalancer != null) {
                placementMetrics.bind(rebalancer);
                server.placement(rebalancer);
            }
            URI base = server.baseUri();
            out.println("epserve: serving " + served.id() + " (" + dir + ") with " + workers + (remote ? " remote" : " in-process")
                    + " expert worker" + (workers == 1 ? "" : "s") + ", KV cache " + stats.kvBlocksTotal() + " blocks × " + stats.kvBlockSize()
                    + " tokens, context " + limit + " tokens");
            out.println("  API:     " + base.resolve("/v1"));
            out.println("  view:    " + (server.metricsUri() != null ? server.metricsUri() : base).resolve("/"));
            URI ops = server.metricsUri() != null ? server.metricsUri() : base;
            out.println("  metrics: " + ops.resolve("/metrics"));
            if (membershipServer != null) {
                out.println("  membership: " + membershipServer.address() + " (epserve worker --join " + membershipServer.address() + ")");
            }
            if (server.config().authenticates()) {
                out.println("  API keys: " + server.config().apiKeys().size() + " accepted (Authorization: Bearer)");
            } else if (!isLoopback(host)) {
                out.println("epserve: warning: the API on " + host + " accepts anyone; set --api-key-file to ask for a key");
            }
            out.flush();
            LoadedModel m = loaded;
            Membership watching = membership;
            MembershipServer joins = membershipServer;
            StateSaver saving = saver;
            return new Running(server, engine, loaded, served, () -> {
                if (joins != null) {
                    joins.close();
                }
                if (rebalancer != null) {
                    rebalancer.close();
                }
                if (saving != null) {
                    saving.close(); // the last save, before the dispatcher releases the workers
                }
                if (watching != null) {
                    watching.close();
                }
                model.printStats(m, System.err);
            });
        } catch (RuntimeException e) {
            server.close();
            if (membershipServer != null) {
                membershipServer.close();
            }
            if (saver != null) {
                saver.close();
            }
            if (membership != null) {
                membership.close();
            }
            if (engine != null) {
                engine.close();
            }
            if (loaded != null) {
                loaded.close();
            }
            throw e;
        }
    }

    /** The membership's table as the server shows it. */
    static WorkerTable.Snapshot table(Membership.View v) {
        return new WorkerTable.Snapshot(v.epoch(), v.members().stream().map(w -> new WorkerTable.Worker(w.address(), w.host(),
                w.state().label(), w.capacity(), w.experts(), w.rttMillis(), w.load(), w.calls(), w.failures(), w.loadMillis(),
                w.fromCache(), w.mapped(), w.since().toString(), w.reason(), w.joined())).toList());
    }

    /**
     * Keeps --state-dir current: once at start (the frontend id), at every placement change, every
     * {@value #STATE_SAVE_SECONDS} s (the load window), and at close.
     */
    static final class StateSaver implements AutoCloseable {
        private final FrontendState state;
        private final Membership membership;
        private final GrpcExpertDispatcher dispatcher;
        private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-state-dir");
            t.setDaemon(true);
            return t;
        });

        StateSaver(FrontendState state, Membership membership, GrpcExpertDispatcher dispatcher) {
            this.state = state;
            this.membership = membership;
            this.dispatcher = dispatcher;
            save();
            membership.onEpochChange(this::save);
            timer.scheduleWithFixedDelay(this::saveQuietly, STATE_SAVE_SECONDS, STATE_SAVE_SECONDS, TimeUnit.SECONDS);
        }

        void save() {
            state.save(FrontendState.Snapshot.of(dispatcher.frontendId(), dispatcher.placement(), dispatcher.routedTokens().window(),
                    membership.hosts()));
        }

        private void saveQuietly() {
            try {
                save();
            } catch (RuntimeException e) {
                System.err.println("epserve: " + e.getMessage());
            }
        }

        @Override
        public void close() {
            timer.shutdownNow();
            saveQuietly();
        }
    }

    /** The server's settings from the options, checked once (the config value validates them). */
    EpServer.Builder serverBuilder() {
        seconds("--drain", drainSeconds, true);
        seconds("--header-timeout", headerTimeoutSeconds, false);
        seconds("--idle-timeout", idleTimeoutSeconds, false);
        List<String> keys = new ArrayList<>(apiKeys);
        if (apiKeyFile != null) {
            List<String> fromFile = ApiKeys.readFile(apiKeyFile);
            if (fromFile.isEmpty()) {
                throw new Main.UsageError("--api-key-file " + apiKeyFile + " holds no key");
            }
            keys.addAll(fromFile);
        }
        EpServer.Builder b = EpServer.builder().host(host).port(port).drainTime(Duration.ofMillis((long) (drainSeconds * 1000)))
                .maxConnections(maxConnections).maxHeaderBytes(maxHeaderBytes)
                .headerTimeout(Duration.ofMillis((long) (headerTimeoutSeconds * 1000)))
                .idleTimeout(Duration.ofMillis((long) (idleTimeoutSeconds * 1000))).apiKeys(keys);
        try {
            if (metricsListen != null) {
                b.metricsListen(EpServer.Listen.parse(metricsListen));
            }
            b.build(); // validates: a bad value fails here, before anything binds or loads
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError((metricsListen != null && e.getMessage().contains("HOST:PORT") ? "--metrics-listen: " : "")
                    + e.getMessage().replace("maxConnections", "--max-connections").replace("maxHeaderBytes", "--max-header-bytes")
                    .replace("port must", "--port must").replace("host is empty", "--host is empty")
                    .replace("an API key", "--api-key: an API key"));
        }
        return b;
    }

    private static void seconds(String option, double value, boolean zeroAllowed) {
        if (!(value >= 0) || Double.isInfinite(value) || (!zeroAllowed && value * 1000 < 1)) {
            throw new Main.UsageError(option + " must be a number of seconds " + (zeroAllowed ? ">= 0" : "> 0") + ", got " + value);
        }
    }

    private static boolean isLoopback(String host) {
        return host.equals("localhost") || host.startsWith("127.") || host.equals("::1") || host.equals("[::1]");
    }

    private EngineConfig engineConfig() {
        long kv;
        try {
            kv = ByteSize.parse(kvMemory);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--kv-memory: " + e.getMessage());
        }
        try {
            return new EngineConfig(kv, blockSize, maxBatchTokens, maxRunning, maxWaiting, !noPrefixCaching);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError(e.getMessage().replace("kvCacheBytes", "--kv-memory").replace("blockSize", "--block-size")
                    .replace("maxBatchTokens", "--max-batch-tokens").replace("maxRunning", "--max-running")
                    .replace("maxWaiting", "--max-waiting"));
        }
    }
}
