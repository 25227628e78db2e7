package io.epserve.rpc;

import io.epserve.rpc.v1.JoinRequest;
import io.epserve.rpc.v1.JoinResponse;
import io.epserve.rpc.v1.LeaveRequest;
import io.epserve.rpc.v1.MembershipServiceGrpc;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.PrintStream;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * A worker's registration at a frontend's membership service ({@code epserve worker --join
 * FRONTEND:PORT}): Join at start, retried with a doubling backoff until the frontend accepts it,
 * then repeated every {@code heartbeat} so that a frontend that forgot the worker (it restarted
 * without its state) learns it again; {@link #leave()} when the worker drains. Each change (joined,
 * refused, joined again) is one log line; a frontend that stays unreachable is not logged at every try.
 */
public final class WorkerJoin implements AutoCloseable {
    public static final Duration DEFAULT_HEARTBEAT = Duration.ofSeconds(5);
    private static final Duration FIRST_RETRY = Duration.ofMillis(250);
    private static final Duration MAX_RETRY = Duration.ofSeconds(10);
    private static final Duration CALL_DEADLINE = Duration.ofSeconds(10);

    /**
     * @param frontend  the frontend's membership service
     * @param advertise the address the frontend reaches this worker at (host:port)
     * @param hostLabel where this worker runs, or empty
     * @param capacity  kernel threads this worker computes with
     * @param heartbeat how often an accepted worker joins again
     */
    public record Settings(HostPort frontend, HostPort advertise, String hostLabel, int capacity, Duration heartbeat) {
        public Settings {
            Objects.requireNonNull(frontend, "frontend");
            Objects.requireNonNull(advertise, "advertise");
            hostLabel = hostLabel == null ? "" : hostLabel;
            if (capacity < 1) {
                throw new IllegalArgumentException("worker capacity must be at least 1, got " + capacity);
            }
            if (heartbeat.isNegative() || heartbeat.isZero()) {
                throw new IllegalArgumentException("join heartbeat must be positive, got " + heartbeat);
            }
            if (advertise.host().equals("0.0.0.0") || advertise.host().equals("::") || advertise.host().equals("[::]")) {
                throw new IllegalArgumentException("--join needs the address the frontend reaches this worker at: listening on "
                        + advertise + ", give --advertise HOST:PORT");
            }
        }
    }

    private final Settings settings;
    private final PrintStream log;
    private final ManagedChannel channel;
    private final MembershipServiceGrpc.MembershipServiceBlockingStub stub;
    private final ScheduledExecutorService timer;
    private volatile boolean joined;
    private volatile boolean stopped;
    private String lastProblem;
    private Duration retry = FIRST_RETRY;

    /** Connects (lazily) with the worker's own security: its secret and/or TLS files are the cluster's. */
    public WorkerJoin(Settings settings, WorkerSecurity security, PrintStream log) {
        this.settings = Objects.requireNonNull(settings, "settings");
        this.log = Objects.requireNonNull(log, "log");
        this.channel = Grpc.newChannelBuilder(settings.frontend().toString(), security.channelCredentials()).build();
        // the same call credentials a frontend sends: the membership service checks only the secret, the id is ignored there
        this.stub = MembershipServiceGrpc.newBlockingStub(channel)
                .withCallCredentials(new FrontendCredentials(FrontendCredentials.newFrontendId(), security.secret()));
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-worker-join");
            t.setDaemon(true);
            return t;
        });
    }

    /** Starts joining in the background (the worker serves meanwhile: the frontend checks it before accepting). */
    public WorkerJoin start() {
        timer.execute(this::attempt);
        return this;
    }

    /** Whether the frontend accepted the last Join. */
    public boolean joined() {
        return joined;
    }

    private void attempt() {
        if (stopped) {
            return;
        }
        Duration next;
        try {
            JoinResponse r = stub.withDeadlineAfter(CALL_DEADLINE.toNanos(), TimeUnit.NANOSECONDS).join(JoinRequest.newBuilder()
                    .setAddress(settings.advertise().toString()).setHostLabel(settings.hostLabel()).setCapacity(settings.capacity()).build());
            if (!joined || r.getAdded()) {
                log.println("epserve worker " + settings.advertise() + ": joined frontend " + settings.frontend()
                        + (r.getAdded() ? "" : " (it knew this worker)") + " at placement epoch " + r.getEpoch()
                        + "; experts come with the next epoch");
                log.flush();
            }
            joined = true;
            lastProblem = null;
            retry = FIRST_RETRY;
            next = settings.heartbeat();
        } catch (StatusRuntimeException e) {
            joined = false;
            String problem = e.getStatus().getCode() == Status.Code.UNAVAILABLE
                    ? "frontend " + settings.frontend() + " unreachable (" + LinkFailure.describe(e.getStatus()) + ")"
                    : "frontend " + settings.frontend() + " refused the join: " + LinkFailure.describe(e.getStatus());
            if (!problem.equals(lastProblem)) {
                log.println("epserve worker " + settings.advertise() + ": " + problem + "; retrying");
                log.flush();
                lastProblem = problem;
            }
            next = retry;
            retry = retry.multipliedBy(2).compareTo(MAX_RETRY) > 0 ? MAX_RETRY : retry.multipliedBy(2);
        }
        if (!stopped) {
            timer.schedule(this::attempt, next.toNanos(), TimeUnit.NANOSECONDS);
        }
    }

    /** Stops joining and tells the frontend this worker leaves (bounded; a frontend that is gone is not waited for). */
    public void leave() {
        stopped = true;
        timer.shutdownNow();
        try {
            stub.withDeadlineAfter(5, TimeUnit.SECONDS).leave(LeaveRequest.newBuilder().setAddress(settings.advertise().toString()).build());
            log.println("epserve worker " + settings.advertise() + ": told frontend " + settings.frontend() + " it leaves");
        } catch (StatusRuntimeException e) {
            log.println("epserve worker " + settings.advertise() + ": could not tell frontend " + settings.frontend() + " it leaves: "
                    + LinkFailure.describe(e.getStatus()));
        }
        log.flush();
    }

    @Override
    public void close() {
        stopped = true;
        timer.shutdownNow();
        channel.shutdownNow();
    }
}
