package io.epserve.rpc;

import io.epserve.moe.ExpertSource;
import io.epserve.tensor.KernelPool;
import java.io.PrintStream;
import java.time.Duration;
import java.util.Objects;

/**
 * An expert worker as a process ({@code epserve worker --listen HOST:PORT --model DIR ...}, whose
 * command line {@link Settings} holds): prints exactly one line {@value #LISTENING} HOST:PORT (the
 * real port when 0 was asked for) on stdout once serving, then serves until told to stop: SIGTERM
 * (or SIGINT) drains the worker ({@link WorkerDrain}) and the process exits 0. The process's main
 * class lives where the model's code is at hand to open the experts ({@link ExpertSource.Opener}).
 */
public final class WorkerProcess {
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

    private WorkerProcess() {}

    /**
     * Starts a worker whose experts {@code experts} opens, prints the listening line to
     * {@code out}, joins the frontend when the settings say so, and blocks until the server
     * terminates. SIGTERM drains the worker ({@link WorkerDrain}) and ends the process with code 0.
     */
    public static void serve(Settings settings, ExpertSource.Opener experts, PrintStream out, PrintStream err) throws InterruptedException {
        WorkerServer server = start(settings, experts, out, err);
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
    public static WorkerServer start(Settings s, ExpertSource.Opener experts, PrintStream out, PrintStream err) {
        WorkerServer server = WorkerServer.builder().host(s.listen().host()).port(s.listen().port()).model(s.model()).experts(experts)
                .security(s.security()).leaseTimeout(s.leaseTimeout()).build().start();
        HostPort bound = new HostPort(s.listen().host(), server.port());
        err.println("epserve worker " + bound + ": serving " + s.model().fingerprint() + "; callers: " + s.security().describe()
                + (s.security().authenticated() ? "" : " (loopback only: anyone on this host can use it)"));
        err.flush();
        out.println(LISTENING + " " + bound);
        out.flush();
        return server;
    }
}
