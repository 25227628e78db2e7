package io.epserve.rpc;

import io.epserve.moe.ExpertSource;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.grpc.Server;
import io.grpc.ServerBuilder;
import io.grpc.ServerInterceptors;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.services.HealthStatusManager;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;

/**
 * An expert worker's gRPC server (DESIGN.md §1, §3.10): serves {@code epserve.expert.v1.ExpertService}
 * and the standard {@code grpc.health.v1.Health} service. A lifecycle object: the builder only
 * records settings, {@link #start()} binds and serves, {@link #close()} stops and unmaps.
 *
 * <p>Health: both the server ("") and {@code epserve.expert.v1.ExpertService} report SERVING from
 * {@link #start()} on, before any Assign: "serving" means "ready to be assigned"; a Compute before
 * the first Assign answers FAILED_PRECONDITION, which the frontend handles by assigning. Whether a
 * worker holds a share is what {@code Info} tells. On {@link #close()} both turn NOT_SERVING.
 *
 * <p>Security: the expert service is behind {@link WorkerAuthInterceptor} (the shared secret, when
 * given) and, with TLS files, mutual TLS; without either the server binds loopback only. The
 * health service answers anyone who reaches the port: it tells liveness, nothing else.
 *
 * <pre>
 *   WorkerServer s = WorkerServer.builder().model(WorkerModel.of(dir)).experts(ModelExperts::open)
 *           .host("127.0.0.1").port(0).build();     // no I/O
 *   s.start();                                    // binds; s.port() is the real port
 *   ...
 *   s.close();                                    // stops, waits up to 5 s, unmaps the share
 * </pre>
 */
public final class WorkerServer implements AutoCloseable {
    /** Largest message accepted (a prefill of many tokens is one message per worker and layer). */
    public static final int DEFAULT_MAX_MESSAGE_BYTES = 256 << 20;
    /** Service name the health service reports under, besides "". */
    public static final String SERVICE_NAME = ExpertServiceGrpc.SERVICE_NAME;

    private final String host;
    private final int requestedPort;
    private final Executor executor;
    private final ServerBuilder<?> injected;
    private final String fixedName;
    private final WorkerModel model;
    private final ExpertSource.Opener experts;
    private final WorkerSecurity security;
    private final Duration leaseTimeout;
    private final int maxMessageBytes;

    private Server server;
    private HealthStatusManager health;
    private ExpertWorkerService service;
    private volatile String name;
    private boolean closed;

    private WorkerServer(Builder b) {
        this.host = b.host;
        this.requestedPort = b.port;
        this.executor = b.executor;
        this.injected = b.serverBuilder;
        this.fixedName = b.name;
        this.model = b.model;
        this.experts = b.experts;
        this.security = b.security;
        this.leaseTimeout = b.leaseTimeout;
        this.maxMessageBytes = b.maxMessageBytes;
        this.name = b.name != null ? b.name : b.host + ":" + b.port;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Settings of a worker server; validated by {@link #build()}. */
    public static final class Builder {
        private String host = "127.0.0.1";
        private int port = 0;
        private Executor executor;
        private ServerBuilder<?> serverBuilder;
        private String name;
        private WorkerModel model;
        private ExpertSource.Opener experts;
        private WorkerSecurity security = WorkerSecurity.NONE;
        private Duration leaseTimeout = WorkerOwnership.DEFAULT_LEASE;
        private int maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;

        private Builder() {}

        /** Interface to bind (default 127.0.0.1; 0.0.0.0 for all). */
        public Builder host(String host) {
            this.host = Objects.requireNonNull(host, "host");
            return this;
        }

        /** TCP port; 0 (default) picks a free one, read it with {@link #port()} after start. */
        public Builder port(int port) {
            this.port = port;
            return this;
        }

        /**
         * Executor for the service's calls. Default: none (direct): a call runs on the transport
         * thread that read it, which saves two thread hops per Compute (measured: they cost more than
         * the network on a busy 2-core host). A Compute stream is sequential anyway, and each
         * connection (frontend) has its own transport thread; pass a pool when many frontends share
         * a worker with fewer transport threads than frontends. An injected {@link #serverBuilder}
         * keeps its own executor setting unless one is given here (an in-process transport with a
         * direct executor would run the worker's compute on the frontend's thread).
         */
        public Builder executor(Executor executor) {
            this.executor = executor;
            return this;
        }

        /**
         * A server builder to use instead of a TCP server on host:port (tests pass an in-process
         * one); the services and settings of this builder are added to it.
         */
        public Builder serverBuilder(ServerBuilder<?> serverBuilder) {
            this.serverBuilder = serverBuilder;
            return this;
        }

        /** Name in messages (default host:port, with the real port once started). */
        public Builder name(String name) {
            this.name = name;
            return this;
        }

        /** The model this worker serves (required): opened at start (header and config only; nothing is mapped until Assign). */
        public Builder model(WorkerModel model) {
            this.model = model;
            return this;
        }

        /**
         * How the model's routed experts are opened and mapped (required; the model module's
         * {@code ModelExperts::open}): this module knows the wire, not how models are stored.
         */
        public Builder experts(ExpertSource.Opener experts) {
            this.experts = Objects.requireNonNull(experts, "experts");
            return this;
        }

        /** Shared secret and/or mutual TLS (default none: loopback only). */
        public Builder security(WorkerSecurity security) {
            this.security = Objects.requireNonNull(security, "security");
            return this;
        }

        /** How long the holding frontend may stay silent before another may take the worker (default 30 s). */
        public Builder leaseTimeout(Duration d) {
            this.leaseTimeout = Objects.requireNonNull(d, "leaseTimeout");
            return this;
        }

        public Builder maxMessageBytes(int bytes) {
            this.maxMessageBytes = bytes;
            return this;
        }

        public WorkerServer build() {
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("worker port must be in [0, 65535], got " + port);
            }
            if (host.isBlank()) {
                throw new IllegalArgumentException("worker host must not be blank");
            }
            if (maxMessageBytes < 1 << 20) {
                throw new IllegalArgumentException("worker maxMessageBytes must be at least 1 MiB, got " + maxMessageBytes);
            }
            if (model == null) {
                throw new IllegalArgumentException("a worker needs its model (--model DIR)");
            }
            if (experts == null) {
                throw new IllegalArgumentException("a worker needs the opener of its model's experts (Builder.experts)");
            }
            if (leaseTimeout.isNegative() || leaseTimeout.isZero()) {
                throw new IllegalArgumentException("worker lease timeout must be positive, got " + leaseTimeout);
            }
            if (serverBuilder == null) {
                security.requireListenable(host);
            }
            return new WorkerServer(this);
        }
    }

    /**
     * Opens the model (its header and config: fails here on a bad model directory), binds and
     * serves. Throws UncheckedIOException when the port cannot be bound.
     */
    public synchronized WorkerServer start() {
        if (server != null) {
            throw new IllegalStateException("worker server already started");
        }
        ExpertSource source = model.open(experts);
        try {
            service = new ExpertWorkerService(() -> name, model.fingerprint(), source, new WorkerOwnership(leaseTimeout, () -> name));
        } catch (RuntimeException e) {
            source.close();
            throw e;
        }
        ServerBuilder<?> sb;
        try {
            // Netty's builder because only it binds one interface (Grpc.newServerBuilderForPort binds all).
            sb = injected != null ? injected
                    : NettyServerBuilder.forAddress(new InetSocketAddress(host, requestedPort), security.serverCredentials());
        } catch (RuntimeException e) {
            service.close();
            throw e;
        }
        health = new HealthStatusManager();
        sb.addService(ServerInterceptors.intercept(service, new WorkerAuthInterceptor(security.secret(), () -> name)))
                .addService(health.getHealthService()).maxInboundMessageSize(maxMessageBytes);
        if (executor != null) {
            sb.executor(executor);
        } else if (injected == null) {
            sb.directExecutor();
        }
        Server s;
        try {
            s = sb.build().start();
        } catch (IOException e) {
            service.close();
            throw new UncheckedIOException("cannot listen on " + host + ":" + requestedPort + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            service.close();
            throw e;
        }
        server = s;
        if (fixedName == null && injected == null) {
            name = host + ":" + port();
        }
        health.setStatus("", ServingStatus.SERVING);
        health.setStatus(SERVICE_NAME, ServingStatus.SERVING);
        return this;
    }

    /** The bound port (the real one when 0 was asked for); -1 for an injected non-TCP server. */
    public int port() {
        Server s = server;
        if (s == null) {
            throw new IllegalStateException("worker server not started");
        }
        return s.getListenSockets().stream().filter(a -> a instanceof InetSocketAddress)
                .mapToInt(a -> ((InetSocketAddress) a).getPort()).findFirst().orElse(-1);
    }

    public String host() {
        return host;
    }

    public WorkerSecurity security() {
        return security;
    }

    /** The name used in messages (host:port once started). */
    public String name() {
        return name;
    }

    public boolean isStarted() {
        return server != null;
    }

    /**
     * Starts leaving: Info reports DRAINING from now on, so the holding frontend places this
     * worker's experts elsewhere and then releases it; Compute for the epoch it holds goes on
     * meanwhile. See {@link WorkerDrain} for the whole sequence.
     */
    public void drain() {
        started().drain();
    }

    public boolean draining() {
        return started().draining();
    }

    /** Whether a frontend holds this worker now (assigned it and its lease has not expired). */
    public boolean held() {
        return started().held();
    }

    private synchronized ExpertWorkerService started() {
        if (service == null) {
            throw new IllegalStateException("worker server not started");
        }
        return service;
    }

    /** Stops accepting calls; cancels the ones in flight after 5 s; unmaps the share. Idempotent. */
    @Override
    public synchronized void close() {
        if (server == null || closed) {
            return;
        }
        closed = true;
        health.enterTerminalState();
        service.closeRings(); // their calls live as long as the rings and would hold the shutdown up
        server.shutdown();
        try {
            if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
                server.shutdownNow();
                server.awaitTermination(5, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            server.shutdownNow();
            Thread.currentThread().interrupt();
        } finally {
            service.close();
        }
    }

    /** Blocks until the server has terminated (after {@link #close()}, or forever while it serves). */
    public void awaitTermination() throws InterruptedException {
        Server s;
        synchronized (this) {
            s = server;
        }
        if (s == null) {
            throw new IllegalStateException("worker server not started");
        }
        s.awaitTermination();
    }

    /** Like {@link #awaitTermination()}, bounded; true if terminated. */
    public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
        Server s;
        synchronized (this) {
            s = server;
        }
        if (s == null) {
            throw new IllegalStateException("worker server not started");
        }
        return s.awaitTermination(timeout, unit);
    }
}
