package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.engine.Engine;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.HttpDecoderConfig;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.timeout.IdleStateHandler;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import io.epserve.moe.Rebalancer;
import io.epserve.moe.RoutedTokens;

/**
 * epserve's HTTP server (DESIGN.md §1, the frontend's API side): the OpenAI-compatible API, SSE
 * streaming, {@code /metrics}, {@code /health} and {@code /ready}, and the live view.
 *
 * <p>A lifecycle object (DESIGN.md §3.10): {@link #builder()} builds it without I/O;
 * {@link #start()} binds, after which {@code /health} answers 200 and everything else that needs
 * the model answers 503 until {@link #serve} hands over the loaded model and its engine, so a
 * load balancer sees a process that is up but not ready while a large checkpoint loads.
 * {@link #close()} stops taking generations, lets running ones finish for the drain time, then
 * closes every connection (cancelling what is left).
 *
 * <p>Each connection's pipeline is Netty's: {@code HttpServerCodec} (request line and header
 * limits; what it cannot decode becomes a 400, 414 or 431), a {@link HeaderTimeout}, an
 * {@code IdleStateHandler}, the {@link JsonErrorAggregator} (body limit, {@code Expect}), then an
 * {@link HttpHandler} that answers in request order through the {@link Routes} table. The API
 * listens on {@code host:port}; {@code /metrics} and the live view there too, or on
 * {@link Config#metricsListen()} when set.
 */
public final class EpServer implements AutoCloseable {
    /** Which of the server's ports a connection came in on. */
    enum Listener { API, OPS }

    /** The served model and its engine, once loaded. */
    record Serving(ServedModel model, Engine engine, RequestParser parser) {}

    final ObjectMapper json = new ObjectMapper();
    final ServerMetrics metrics = new ServerMetrics();
    final LiveFeed live = new LiveFeed(json);
    final ExecutorService executor = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("epserve-api-", 0).factory());
    /**
     * Where request bodies are parsed and tokenized: a few platform threads and a bounded queue, so
     * that big prompts wait for each other instead of taking every core from the engine and the
     * event loops; when the queue is full a request gets 429.
     */
    final ThreadPoolExecutor parsers;

    private final Config config;
    final ApiKeys apiKeys;
    private final ChannelGroup connections = new DefaultChannelGroup("epserve-http", GlobalEventExecutor.INSTANCE);
    private final AtomicInteger activeExchanges = new AtomicInteger();
    private volatile Serving serving;
    private volatile Readiness readiness;
    private volatile boolean draining;
    private final AtomicInteger openConnections = new AtomicInteger();
    private final Routes routes;
    private EventLoopGroup loops;
    private Channel serverChannel;
    private Channel metricsChannel;

    /**
     * Validated settings (DESIGN.md §3.11).
     *
     * @param port            0 picks a free port
     * @param ioThreads       event-loop threads (all connections and streams are multiplexed on them)
     * @param maxRequestBytes largest request body; larger ones get 413
     * @param drainTime       how long {@link #close()} lets running generations finish
     * @param maxHeaderBytes  largest request line and largest header block; longer ones get 414 / 431
     * @param maxConnections  open connections at most (both listeners together); one more is answered 503 and closed
     * @param headerTimeout   time from a request's first byte to the end of its headers; slower clients get 408
     * @param idleTimeout     a connection with no request in progress and no traffic for this long is closed
     * @param apiKeys         keys accepted as {@code Authorization: Bearer KEY}; empty: no authentication
     * @param metricsListen   where {@code /metrics} and the live view listen instead of the API port, or null
     * @param clientCheck     how often a client that closed its sending side during a non-streaming
     *                        generation is checked (an interim 102 response) for being gone
     */
    public record Config(String host, int port, int ioThreads, int maxRequestBytes, Duration drainTime, int maxHeaderBytes,
                         int maxConnections, Duration headerTimeout, Duration idleTimeout, List<String> apiKeys,
                         Listen metricsListen, Duration clientCheck) {
        public static final String DEFAULT_HOST = "127.0.0.1";
        public static final int DEFAULT_PORT = 8080;
        public static final int DEFAULT_IO_THREADS = 2;
        public static final int DEFAULT_MAX_REQUEST_BYTES = 32 << 20;
        public static final Duration DEFAULT_DRAIN_TIME = Duration.ofSeconds(5);
        public static final int DEFAULT_MAX_HEADER_BYTES = 8192;
        public static final int DEFAULT_MAX_CONNECTIONS = 1024;
        public static final Duration DEFAULT_HEADER_TIMEOUT = Duration.ofSeconds(10);
        public static final Duration DEFAULT_IDLE_TIMEOUT = Duration.ofSeconds(60);
        public static final Duration DEFAULT_CLIENT_CHECK = Duration.ofSeconds(1);

        public Config {
            if (host == null || host.isBlank()) {
                throw new IllegalArgumentException("host is empty");
            }
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
            }
            if (ioThreads < 1) {
                throw new IllegalArgumentException("ioThreads must be at least 1, got " + ioThreads);
            }
            if (maxRequestBytes < 1024) {
                throw new IllegalArgumentException("maxRequestBytes must be at least 1024, got " + maxRequestBytes);
            }
            if (drainTime == null || drainTime.isNegative()) {
                throw new IllegalArgumentException("drainTime is negative: " + drainTime);
            }
            if (maxHeaderBytes < 256) {
                throw new IllegalArgumentException("maxHeaderBytes must be at least 256, got " + maxHeaderBytes);
            }
            if (maxConnections < 1) {
                throw new IllegalArgumentException("maxConnections must be at least 1, got " + maxConnections);
            }
            if (headerTimeout == null || headerTimeout.isNegative() || headerTimeout.isZero()) {
                throw new IllegalArgumentException("headerTimeout must be positive, got " + headerTimeout);
            }
            if (clientCheck == null || clientCheck.isNegative() || clientCheck.isZero()) {
                throw new IllegalArgumentException("clientCheck must be positive, got " + clientCheck);
            }
            if (idleTimeout == null || idleTimeout.isNegative() || idleTimeout.isZero()) {
                throw new IllegalArgumentException("idleTimeout must be positive, got " + idleTimeout);
            }
            apiKeys = List.copyOf(apiKeys == null ? List.of() : apiKeys);
            for (String k : apiKeys) {
                if (k.isEmpty() || !k.chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
                    throw new IllegalArgumentException("an API key must be printable ASCII without spaces, and not empty");
                }
            }
        }

        public static Config defaults() {
            return new Builder().config();
        }

        /** True when the API asks for a key. */
        public boolean authenticates() {
            return !apiKeys.isEmpty();
        }
    }

    /** A listening address; port 0 picks a free one. */
    public record Listen(String host, int port) {
        public Listen {
            if (host == null || host.isBlank()) {
                throw new IllegalArgumentException("host is empty");
            }
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port must be in [0, 65535], got " + port);
            }
        }

        /** {@code HOST:PORT} ({@code [v6]:PORT} for IPv6), or {@code :PORT} / {@code PORT} for loopback. */
        public static Listen parse(String s) {
            int colon = s.lastIndexOf(':');
            String host = colon <= 0 ? Config.DEFAULT_HOST : s.substring(0, colon);
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            String port = s.substring(colon + 1);
            try {
                return new Listen(host, Integer.parseInt(port));
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("'" + s + "' is not HOST:PORT (the port is not a number)");
            }
        }
    }

    /** Builds an {@link EpServer}; nothing is bound until {@link EpServer#start()}. */
    public static final class Builder {
        private String host = Config.DEFAULT_HOST;
        private int port = Config.DEFAULT_PORT;
        private int ioThreads = Config.DEFAULT_IO_THREADS;
        private int maxRequestBytes = Config.DEFAULT_MAX_REQUEST_BYTES;
        private Duration drainTime = Config.DEFAULT_DRAIN_TIME;
        private int maxHeaderBytes = Config.DEFAULT_MAX_HEADER_BYTES;
        private int maxConnections = Config.DEFAULT_MAX_CONNECTIONS;
        private Duration headerTimeout = Config.DEFAULT_HEADER_TIMEOUT;
        private Duration idleTimeout = Config.DEFAULT_IDLE_TIMEOUT;
        private Duration clientCheck = Config.DEFAULT_CLIENT_CHECK;
        private List<String> apiKeys = List.of();
        private Listen metricsListen;

        public Builder host(String h) {
            this.host = h;
            return this;
        }

        public Builder port(int p) {
            this.port = p;
            return this;
        }

        public Builder ioThreads(int n) {
            this.ioThreads = n;
            return this;
        }

        public Builder maxRequestBytes(int n) {
            this.maxRequestBytes = n;
            return this;
        }

        public Builder drainTime(Duration d) {
            this.drainTime = d;
            return this;
        }

        public Builder maxHeaderBytes(int n) {
            this.maxHeaderBytes = n;
            return this;
        }

        public Builder maxConnections(int n) {
            this.maxConnections = n;
            return this;
        }

        public Builder headerTimeout(Duration d) {
            this.headerTimeout = d;
            return this;
        }

        public Builder idleTimeout(Duration d) {
            this.idleTimeout = d;
            return this;
        }

        /** See {@link Config#clientCheck()}. */
        public Builder clientCheck(Duration d) {
            this.clientCheck = d;
            return this;
        }

        public Builder apiKeys(List<String> keys) {
            this.apiKeys = keys;
            return this;
        }

        /** Serves {@code /metrics} and the live view on this address (without API keys) instead of the API port. */
        public Builder metricsListen(Listen l) {
            this.metricsListen = l;
            return this;
        }

        Config config() {
            return new Config(host, port, ioThreads, maxRequestBytes, drainTime, maxHeaderBytes, maxConnections, headerTimeout,
                    idleTimeout, apiKeys, metricsListen, clientCheck);
        }

        public EpServer build() {
            return new EpServer(config());
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    private EpServer(Config config) {
        this.config = config;
        this.apiKeys = new ApiKeys(config.apiKeys());
        int threads = Math.max(1, Runtime.getRuntime().availableProcessors() / 2);
        this.parsers = new ThreadPoolExecutor(threads, threads, 0, TimeUnit.SECONDS, new ArrayBlockingQueue<>(PARSE_QUEUE),
                new DefaultThreadFactory("epserve-parse", true));
        this.routes = Routes.standard(this);
        metrics.readiness(this::ready, () -> {
            Readiness r = readiness;
            return r == null ? Map.of() : r.workersUp();
        });
        metrics.workerStates(() -> workerTable);
    }

    /** Request bodies that may wait for a parser thread; more get 429. */
    static final int PARSE_QUEUE = 256;

    public Config config() {
        return config;
    }

    /** Binds the port (and the metrics port, when set) and starts answering; the model comes later through {@link #serve}. */
    public synchronized EpServer start() {
        if (loops != null) {
            throw new IllegalStateException("already started");
        }
        loops = new MultiThreadIoEventLoopGroup(config.ioThreads(), new DefaultThreadFactory("epserve-http", true),
                NioIoHandler.newFactory());
        try {
            serverChannel = bind(config.host(), config.port(), Listener.API);
            if (config.metricsListen() != null) {
                metricsChannel = bind(config.metricsListen().host(), config.metricsListen().port(), Listener.OPS);
            }
        } catch (RuntimeException e) {
            if (serverChannel != null) {
                serverChannel.close().syncUninterruptibly();
        if (metricsChannel != null) {
            metricsChannel.close().syncUninterruptibly();
        }
            }
            loops.shutdownGracefully(0, 0, TimeUnit.SECONDS);
            loops = null;
            throw e;
        }
        return this;
    }

    private Channel bind(String host, int port, Listener listener) {
        ServerBootstrap b = new ServerBootstrap()
                .group(loops)
                .channel(NioServerSocketChannel.class)
                .option(ChannelOption.SO_BACKLOG, 1024)
                .childOption(ChannelOption.TCP_NODELAY, true)
                // a client that shuts down its sending side after the request still gets the response
                .childOption(ChannelOption.ALLOW_HALF_CLOSURE, true)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        connections.add(ch);
                        if (openConnections.incrementAndGet() > config.maxConnections()) {
                            ch.closeFuture().addListener(f -> openConnections.decrementAndGet());
                            metrics.connectionRefused();
                            ch.writeAndFlush(Unpooled.wrappedBuffer(tooManyConnections())).addListener(ChannelFutureListener.CLOSE);
                            return;
                        }
                        ch.closeFuture().addListener(f -> openConnections.decrementAndGet());
                        HeaderTimeout headers = new HeaderTimeout(config.headerTimeout());
                        HttpDecoderConfig decoder = new HttpDecoderConfig()
                                .setMaxInitialLineLength(config.maxHeaderBytes())
                                .setMaxHeaderSize(config.maxHeaderBytes());
                        ch.pipeline().addLast(headers.bytesSeen(), new HttpServerCodec(decoder), headers.headersSeen(),
                                new IdleStateHandler(0, 0, config.idleTimeout().toMillis(), TimeUnit.MILLISECONDS),
                                new JsonErrorAggregator(config.maxRequestBytes(), json),
                                new HttpHandler(EpServer.this, listener));
                    }
                });
        try {
            return b.bind(host, port).sync().channel();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while binding", e);
        } catch (Exception e) {
            String why = "cannot listen on " + host + ":" + port + ": " + e.getMessage();
            throw new UncheckedIOException(why, e instanceof IOException io ? io : new IOException(e));
        }
    }

    /** The whole 503 answer to a connection over the cap, written before any request is read. */
    private byte[] tooManyConnections() {
        byte[] body;
        try {
            body = json.writeValueAsBytes(ApiError.notReady("too many open connections (at most " + config.maxConnections()
                    + "); retry later").toJson());
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        String head = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " + body.length
                + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
        byte[] h = head.getBytes(StandardCharsets.US_ASCII);
        byte[] all = Arrays.copyOf(h, h.length + body.length);
        System.arraycopy(body, 0, all, h.length, body.length);
        return all;
    }

    /**
     * Serves a loaded model: registers the metrics as an observer of the engine and starts the
     * live view's sampling. From now on the API answers (and /ready says 200 when the engine does).
     *
     * @param workerStats transport counters of remote expert workers, or null (in-process workers)
     * @param routed      the dispatcher's count of routed tokens, which /metrics and the live view read
     */
    public synchronized void serve(ServedModel model, Engine engine, WorkerStatsSource workerStats, RoutedTokens routed) {
        if (serving != null) {
            throw new IllegalStateException("already serving " + serving.model().id());
        }
        LiveStats stats = new LiveStats(json, metrics, model.layout(), engine::stats, model.id());
        metrics.attach(model.layout(), engine::stats, workerStats, routed, stats::imbalance);
        engine.addObserver(metrics);
        WorkerTable table = workerTable;
        if (table != null) {
            stats.workers(table);
        }
        live.start(stats);
        serving = new Serving(model, engine, new RequestParser(json, model));
        // Jinjava compiles and warms up on first use (about a second): pay it now, not in the first chat request.
        model.chatTemplate().ifPresent(t -> executor.execute(() -> {
            try {
                t.render(List.of(Map.of("role", "user", "content", "warm-up")), true);
            } catch (RuntimeException ignored) {
                // a template may refuse this conversation; it is only a warm-up
            }
        }));
    }

    public void serve(ServedModel model, Engine engine, RoutedTokens routed) {
        serve(model, engine, null, routed);
    }

    Serving serving() {
        return serving;
    }

    /** Where /ready learns whether the expert layer can serve (remote workers); none: it can whenever the engine can. */
    public void readiness(Readiness r) {
        this.readiness = r;
    }

    /** Why /ready answers 503 now, or null when it answers 200. */
    String notReadyReason() {
        return notReadyReason(false);
    }

    /**
     * Why the server refuses generations now, or null when it takes them: as {@link #notReadyReason()},
     * except that workers being down refuse nothing where the frontend computes their experts itself.
     */
    String refuseReason() {
        return notReadyReason(true);
    }

    private String notReadyReason(boolean forGeneration) {
        Serving s = serving;
        if (draining) {
            return "the server is shutting down";
        }
        if (s == null) {
            return "the model is loading";
        }
        if (!s.engine().ready()) {
            return "the engine is not ready (experts loading, or stopped)";
        }
        Readiness r = readiness;
        return r == null || (forGeneration && r.servesWhileWorkersDown()) ? null : r.notReadyReason();
    }

    public boolean ready() {
        return notReadyReason() == null;
    }

    void exchangeStarted() {
        activeExchanges.incrementAndGet();
    }

    void exchangeEnded() {
        synchronized (activeExchanges) {
            activeExchanges.decrementAndGet();
            activeExchanges.notifyAll();
        }
    }

    /** Generations whose response is not complete yet. */
    public int activeRequests() {
        return activeExchanges.get();
    }

    public ServerMetrics metrics() {
        return metrics;
    }

    /** The remote expert workers' table behind /v1/epserve/workers, or null (in-process experts). */
    private volatile WorkerTable workerTable;

    /** Serves {@code GET /v1/epserve/workers}, the {@code epserve_worker_state} gauge and the live view's worker table from {@code t}. */
    public void workers(WorkerTable t) {
        workerTable = t;
        LiveStats s = live.stats();
        if (s != null) {
            s.workers(t);
        }
    }

    WorkerTable workerTable() {
        return workerTable;
    }

    /** The placement control loop behind /v1/epserve/placement and /v1/epserve/load, or null (none). */
    private volatile Rebalancer placement;

    /** Serves the placement endpoints from this control loop. */
    public void placement(Rebalancer r) {
        placement = r;
        LiveStats s = live.stats();
        if (s != null) {
            s.placement(() -> r.control().placement());
        }
    }

    Rebalancer placement() {
        return placement;
    }

    Routes routes() {
        return routes;
    }

    /** True when {@code /metrics} and the live view have their own listener. */
    boolean separateMetricsListener() {
        return config.metricsListen() != null;
    }

    /** The metrics listener's bound address, or null when there is none. */
    public InetSocketAddress metricsAddress() {
        return metricsChannel == null ? null : (InetSocketAddress) metricsChannel.localAddress();
    }

    /** The bound address (the real port when 0 was asked). */
    public InetSocketAddress address() {
        return (InetSocketAddress) serverChannel.localAddress();
    }

    public int port() {
        return address().getPort();
    }

    /** {@code http://host:port} (IPv6 hosts in brackets). */
    public URI baseUri() {
        return uri(config.host(), port());
    }

    /** {@code http://host:port} of the metrics listener, or null when there is none. */
    public URI metricsUri() {
        return metricsChannel == null ? null : uri(config.metricsListen().host(), metricsAddress().getPort());
    }

    private static URI uri(String host, int port) {
        String h = host;
        if (h.contains(":") && !h.startsWith("[")) {
            h = "[" + h + "]";
        }
        if (h.equals("0.0.0.0") || h.equals("[::]")) {
            h = "127.0.0.1";
        }
        return URI.create("http://" + h + ":" + port);
    }

    @Override
    public synchronized void close() {
        if (loops == null) {
            return;
        }
        draining = true;
        long deadline = System.nanoTime() + config.drainTime().toNanos();
        synchronized (activeExchanges) {
            while (activeExchanges.get() > 0) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                try {
                    activeExchanges.wait(Math.max(1, left / 1_000_000), 0);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
        }
        live.close();
        serverChannel.close().syncUninterruptibly();
        if (metricsChannel != null) {
            metricsChannel.close().syncUninterruptibly();
        }
        connections.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        loops.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
        executor.shutdownNow();
        parsers.shutdownNow();
        loops = null;
    }
}
