package io.epserve.rpc;

import io.epserve.format.CheckpointException;
import io.epserve.tensor.DType;
import io.epserve.tensor.KernelPool;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * An expert worker as a process: {@code java -cp ... io.epserve.rpc.WorkerProcessMain --listen HOST:PORT
 * --model DIR [--expert-dtype T] [--cache-dir D] [--auth-secret-file F] [--tls-cert C --tls-key K --tls-ca A]
 * [--lease-timeout S] [--join FRONTEND:PORT [--advertise HOST:PORT] [--host-label L]] [--drain-timeout S]}.
 * Prints exactly one line {@value #LISTENING} HOST:PORT (the real port when 0 was asked for) on
 * stdout once serving, then serves until told to stop: SIGTERM (or SIGINT) drains the worker
 * ({@link WorkerDrain}) and the process exits 0. {@code epserve worker} runs the same code ({@link #serve}).
 */
public final class WorkerProcessMain {
    /** The line's prefix; {@link LocalWorkerProcesses} and tests wait for it. */
    public static final String LISTENING = "epserve worker listening on";

    /**
     * Everything a worker process is started with, validated.
     *
     * @param join         the frontend's membership service to register at (--join), or null
     * @param advertise    the address the frontend reaches this worker at (--advertise), or null for the bound one
     * @param hostLabel    where this worker runs (--host-label), or null
     * @param drainTimeout how long a draining worker waits for its frontend to release it (--drain-timeout)
     */
    public record Settings(HostPort listen, WorkerModel model, WorkerSecurity security, Duration leaseTimeout, HostPort join,
                           HostPort advertise, String hostLabel, Duration drainTimeout) {
        public Settings {
            Objects.requireNonNull(listen, "listen");
            Objects.requireNonNull(model, "model");
            Objects.requireNonNull(security, "security");
            Objects.requireNonNull(leaseTimeout, "leaseTimeout");
            Objects.requireNonNull(drainTimeout, "drainTimeout");
            if (leaseTimeout.isNegative() || leaseTimeout.isZero()) {
                throw new IllegalArgumentException("--lease-timeout must be positive, got " + leaseTimeout.toSeconds() + " s");
            }
            if (drainTimeout.isNegative()) {
                throw new IllegalArgumentException("--drain-timeout must be 0 or more seconds, got " + drainTimeout.toSeconds());
            }
            if (join == null && (advertise != null || hostLabel != null)) {
                throw new IllegalArgumentException("--advertise and --host-label go with --join FRONTEND:PORT");
            }
        }

        /** A worker that does not join a frontend (the frontend lists it in --workers), with the default drain timeout. */
        public Settings(HostPort listen, WorkerModel model, WorkerSecurity security, Duration leaseTimeout) {
            this(listen, model, security, leaseTimeout, null, null, null, WorkerDrain.DEFAULT_TIMEOUT);
        }
    }

    private WorkerProcessMain() {}

    public static void main(String[] args) throws InterruptedException {
        String listen = null;
        Path model = null;
        String dtype = null;
        Path cacheDir = null;
        Path secret = null;
        Path cert = null;
        Path key = null;
        Path ca = null;
        long leaseSeconds = WorkerOwnership.DEFAULT_LEASE.toSeconds();
        String join = null;
        String advertise = null;
        String hostLabel = null;
        long drainSeconds = WorkerDrain.DEFAULT_TIMEOUT.toSeconds();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--listen" -> listen = value(args, ++i, "--listen");
                case "--model" -> model = Path.of(value(args, ++i, "--model"));
                case "--expert-dtype" -> dtype = value(args, ++i, "--expert-dtype");
                case "--cache-dir" -> cacheDir = Path.of(value(args, ++i, "--cache-dir"));
                case "--auth-secret-file" -> secret = Path.of(value(args, ++i, "--auth-secret-file"));
                case "--tls-cert" -> cert = Path.of(value(args, ++i, "--tls-cert"));
                case "--tls-key" -> key = Path.of(value(args, ++i, "--tls-key"));
                case "--tls-ca" -> ca = Path.of(value(args, ++i, "--tls-ca"));
                case "--lease-timeout" -> leaseSeconds = number(value(args, ++i, "--lease-timeout"), "--lease-timeout");
                case "--join" -> join = value(args, ++i, "--join");
                case "--advertise" -> advertise = value(args, ++i, "--advertise");
                case "--host-label" -> hostLabel = value(args, ++i, "--host-label");
                case "--drain-timeout" -> drainSeconds = number(value(args, ++i, "--drain-timeout"), "--drain-timeout");
                default -> usage("unknown argument '" + args[i] + "'");
            }
        }
        if (listen == null || model == null) {
            usage("--listen HOST:PORT and --model DIR are required");
        }
        try {
            WorkerModel m = new WorkerModel(model, dtype == null ? null : DType.parse(dtype), cacheDir);
            WorkerSecurity security = new WorkerSecurity(secret == null ? null : WorkerSecret.fromFile(secret, "--auth-secret-file"),
                    TlsFiles.fromOptions(cert, key, ca));
            serve(new Settings(HostPort.parse(listen, "--listen"), m, security, Duration.ofSeconds(leaseSeconds),
                    join == null ? null : HostPort.parse(join, "--join"), advertise == null ? null : HostPort.parse(advertise, "--advertise"),
                    hostLabel, Duration.ofSeconds(drainSeconds)), System.out, System.err);
        } catch (IllegalArgumentException | UncheckedIOException | CheckpointException e) {
            System.err.println("epserve worker: error: " + e.getMessage());
            System.exit(2);
        }
    }

    /**
     * Starts a worker, prints the listening line to {@code out}, joins the frontend when the
     * settings say so, and blocks until the server terminates. SIGTERM drains the worker
     * ({@link WorkerDrain}) and ends the process with code 0.
     */
    public static void serve(Settings settings, PrintStream out, PrintStream err) throws InterruptedException {
        WorkerServer server = start(settings, out, err);
        WorkerJoin join = null;
        if (settings.join() != null) {
            HostPort advertise = settings.advertise() != null ? settings.advertise() : new HostPort(settings.listen().host(), server.port());
            try {
                join = new WorkerJoin(new WorkerJoin.Settings(settings.join(), advertise, settings.hostLabel(), capacity(),
                        WorkerJoin.DEFAULT_HEARTBEAT), settings.security(), err).start();
            } catch (RuntimeException e) {
                server.close();
                throw e;
            }
        }
        WorkerJoin joined = join;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            WorkerDrain.drain(server, joined, settings.drainTimeout(), err);
            server.close();
            if (joined != null) {
                joined.close();
            }
            // a signal's exit status would read as a crash (143); the worker drained and left on purpose
            Runtime.getRuntime().halt(0);
        }, "epserve-worker-shutdown"));
        server.awaitTermination();
    }

    /** Kernel threads this process computes with (its kernel pool: -Depserve.threads, else the processors). */
    static int capacity() {
        return KernelPool.common().threads();
    }

    /**
     * Starts a worker and prints the listening line to {@code out} (and to {@code err} how callers
     * are authenticated); the caller closes it.
     */
    public static WorkerServer start(Settings s, PrintStream out, PrintStream err) {
        WorkerServer server = WorkerServer.builder().host(s.listen().host()).port(s.listen().port()).model(s.model())
                .security(s.security()).leaseTimeout(s.leaseTimeout()).build().start();
        HostPort bound = new HostPort(s.listen().host(), server.port());
        err.println("epserve worker " + bound + ": serving " + s.model().fingerprint() + "; callers: " + s.security().describe()
                + (s.security().authenticated() ? "" : " (loopback only: anyone on this host can use it)"));
        err.flush();
        out.println(LISTENING + " " + bound);
        out.flush();
        return server;
    }

    private static long number(String text, String option) {
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            usage(option + " must be a whole number of seconds, got '" + text + "'");
            return 0;
        }
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            usage(option + " needs a value");
        }
        return args[i];
    }

    private static void usage(String message) {
        System.err.println("epserve worker: error: " + message);
        System.err.println("usage: WorkerProcessMain --listen HOST:PORT --model DIR [--expert-dtype T] [--cache-dir D] "
                + "[--auth-secret-file F] [--tls-cert C --tls-key K --tls-ca A] [--lease-timeout S] "
                + "[--join FRONTEND:PORT [--advertise HOST:PORT] [--host-label L]] [--drain-timeout S]");
        System.exit(2);
    }
}
