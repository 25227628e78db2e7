package io.epserve.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.engine.Engine;
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.util.concurrent.DefaultThreadFactory;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.time.Duration;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

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
 */
public final class EpServer implements AutoCloseable {
    /** The served model and its engine, once loaded. */
    record Serving(ServedModel model, Engine engine, RequestParser parser) {}

    final ObjectMapper json = new ObjectMapper();
    final ServerMetrics metrics = new ServerMetrics();
    final LiveFeed live = new LiveFeed(json);
    final ExecutorService executor = Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("epserve-api-", 0).factory());

    private final Config config;
    private final ChannelGroup connections = new DefaultChannelGroup("epserve-http", GlobalEventExecutor.INSTANCE);
    private final AtomicInteger activeExchanges = new AtomicInteger();
    private volatile Serving serving;
    private volatile Readiness readiness;
    private volatile boolean draining;
    private EventLoopGroup loops;
    private Channel serverChannel;

    /**
     * Validated settings (DESIGN.md §3.11).
     *
     * @param port            0 picks a free port
     * @param ioThreads       event-loop threads (all connections and streams are multiplexed on them)
     * @param maxRequestBytes largest request body; larger ones get 413
     * @param drainTime       how long {@link #close()} lets running generations finish
     */
    public record Config(String host, int port, int ioThreads, int maxRequestBytes, Duration drainTime) {
        public static final String DEFAULT_HOST = "127.0.0.1";
        public static final int DEFAULT_PORT = 8080;
        public static final int DEFAULT_IO_THREADS = 2;
        public static final int DEFAULT_MAX_REQUEST_BYTES = 32 << 20;
        public static final Duration DEFAULT_DRAIN_TIME = Duration.ofSeconds(5);

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
            if (drainTime.isNegative()) {
                throw new IllegalArgumentException("drainTime is negative: " + drainTime);
            }
        }

        public static Config defaults() {
            return new Config(DEFAULT_HOST, DEFAULT_PORT, DEFAULT_IO_THREADS, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_DRAIN_TIME);
        }
    }

    /** Builds an {@link EpServer}; nothing is bound until {@link EpServer#start()}. */
    public static final class Builder {
        private String host = Config.DEFAULT_HOST;
        private int port = Config.DEFAULT_PORT;
        private int ioThreads = Config.DEFAULT_IO_THREADS;
        private int maxRequestBytes = Config.DEFAULT_MAX_REQUEST_BYTES;
        private Duration drainTime = Config.DEFAULT_DRAIN_TIME;

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

        public EpServer build() {
            return new EpServer(new Config(host, port, ioThreads, maxRequestBytes, drainTime));
        }
    }

    public static Builder builder() {
        return new Builder();
    }

    private EpServer(Config config) {
        this.config = config;
        metrics.readiness(this::ready, () -> {
            Readiness r = readiness;
            return r == null ? java.util.Map.of() : r.workersUp();
        });
    }

    public Config config() {
        return config;
    }

    /** Binds the port and starts answering; the model comes later through {@link #serve}. */
    public synchronized EpServer start() {
        if (loops != null) {
            throw new IllegalStateException("already started");
        }
        loops = new MultiThreadIoEventLoopGroup(config.ioThreads(), new DefaultThreadFactory("epserve-http", true),
                NioIoHandler.newFactory());
        ServerBootstrap b = new ServerBootstrap()
                .group(loops)
                .channel(NioServerSocketChannel.class)
                .option(ChannelOption.SO_BACKLOG, 1024)
                .childOption(ChannelOption.TCP_NODELAY, true)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel ch) {
                        connections.add(ch);
                        ch.pipeline().addLast(new HttpServerCodec(), new HttpObjectAggregator(config.maxRequestBytes()),
                                new HttpHandler(EpServer.this));
                    }
                });
        try {
            serverChannel = b.bind(config.host(), config.port()).sync().channel();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            loops.shutdownGracefully(0, 0, TimeUnit.SECONDS);
            throw new IllegalStateException("interrupted while binding", e);
        } catch (Exception e) {
            loops.shutdownGracefully(0, 0, TimeUnit.SECONDS);
            loops = null;
            String why = "cannot listen on " + config.host() + ":" + config.port() + ": " + e.getMessage();
            throw new UncheckedIOException(why, e instanceof java.io.IOException io ? io : new java.io.IOException(e));
        }
        return this;
    }

    /**
     * Serves a loaded model: registers the metrics as an observer of the engine and starts the
     * live view's sampling. From now on the API answers (and /ready says 200 when the engine does).
     *
     * @param workerStats transport counters of remote expert workers, or null (in-process workers)
     */
    public synchronized void serve(ServedModel model, Engine engine, WorkerStatsSource workerStats) {
        if (serving != null) {
            throw new IllegalStateException("already serving " + serving.model().id());
        }
        LiveStats stats = new LiveStats(json, metrics, model.layout(), engine::stats, model.id());
        metrics.attach(model.layout(), engine::stats, workerStats, stats::imbalance);
        engine.addObserver(metrics);
        live.start(stats);
        serving = new Serving(model, engine, new RequestParser(json, model));
        // Jinjava compiles and warms up on first use (about a second): pay it now, not in the first chat request.
        model.chatTemplate().ifPresent(t -> executor.execute(() -> {
            try {
                t.render(java.util.List.of(java.util.Map.of("role", "user", "content", "warm-up")), true);
            } catch (RuntimeException ignored) {
                // a template may refuse this conversation; it is only a warm-up
            }
        }));
    }

    public void serve(ServedModel model, Engine engine) {
        serve(model, engine, null);
    }

    Serving serving() {
        return serving;
    }

    /** Where /ready learns whether the expert layer can serve (remote workers); none: it can whenever the engine can. */
    public void readiness(Readiness r) {
        this.readiness = r;
    }

    /** Why the server does not take generations now, or null when it does. */
    String notReadyReason() {
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
        return r == null ? null : r.notReadyReason();
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

    /** The bound address (the real port when 0 was asked). */
    public InetSocketAddress address() {
        return (InetSocketAddress) serverChannel.localAddress();
    }

    public int port() {
        return address().getPort();
    }

    /** {@code http://host:port} (IPv6 hosts in brackets). */
    public URI baseUri() {
        String h = config.host();
        if (h.contains(":") && !h.startsWith("[")) {
            h = "[" + h + "]";
        }
        if (h.equals("0.0.0.0") || h.equals("[::]")) {
            h = "127.0.0.1";
        }
        return URI.create("http://" + h + ":" + port());
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
        connections.close().awaitUninterruptibly(5, TimeUnit.SECONDS);
        loops.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
        executor.shutdownNow();
        loops = null;
    }
}
