package io.epserve.rpc;

import com.google.common.util.concurrent.ListenableFuture;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.grpc.Status;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Whether the remote expert layer of a {@link GrpcExpertDispatcher} can serve now: what a server's
 * readiness reports. Every interval each worker is asked Info, bounded by the dispatch deadline; a
 * worker is up when it answered in time, serves this frontend's model and is held by this
 * frontend. A worker that answers but holds nothing for this frontend (it restarted, or was
 * released) is assigned again at once, so it is up, and this frontend's, before a request needs
 * it. A failed dispatch marks its worker down at once, until its next good check. The checks also
 * renew this frontend's lease on every worker while no request flows.
 *
 * <p>Reading the state ({@link #notReadyReason()}, {@link #states()}) does no I/O.
 */
public final class WorkerMonitor implements AutoCloseable {
    public static final Duration DEFAULT_INTERVAL = Duration.ofSeconds(2);

    /** One worker as last seen: up, or down with the reason. */
    public record WorkerState(String worker, boolean up, String reason) {}

    /** The outcome of a worker's last check, and its dispatch failure count when the check began. */
    private record Check(boolean up, String reason, long failuresBefore) {}

    private final GrpcExpertDispatcher dispatcher;
    private final Duration interval;
    private final PrintStream log;
    private final ScheduledExecutorService timer;
    private volatile Map<String, Check> checks = Map.of();

    public WorkerMonitor(GrpcExpertDispatcher dispatcher, Duration interval) {
        this(dispatcher, interval, null);
    }

    /** @param log where a worker going down or coming back is said (one line each), or null */
    public WorkerMonitor(GrpcExpertDispatcher dispatcher, Duration interval, PrintStream log) {
        this.dispatcher = Objects.requireNonNull(dispatcher, "dispatcher");
        this.log = log;
        if (interval.isNegative() || interval.isZero()) {
            throw new IllegalArgumentException("worker check interval must be positive, got " + interval);
        }
        this.interval = interval;
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-worker-monitor");
            t.setDaemon(true);
            return t;
        });
    }

    /** Checks every worker once now, then every interval in the background. */
    public WorkerMonitor start() {
        checkNow();
        timer.scheduleWithFixedDelay(this::checkQuietly, interval.toNanos(), interval.toNanos(), TimeUnit.NANOSECONDS);
        return this;
    }

    private void checkQuietly() {
        try {
            checkNow();
        } catch (IllegalStateException closed) {
            timer.shutdown(); // the dispatcher closed: nothing left to watch
        } catch (RuntimeException e) {
            System.err.println("epserve: worker check failed: " + e);
        }
    }

    /** One round of checks, all workers at once; returns when each answered or its deadline passed. */
    public void checkNow() {
        GrpcExpertDispatcher.Links current = dispatcher.links();
        WorkerLink[] links = current.links();
        long deadlineNanos = dispatcher.config().deadline().toNanos();
        long[] failuresBefore = new long[links.length];
        List<ListenableFuture<InfoResponse>> answers = new ArrayList<>();
        for (int w = 0; w < links.length; w++) {
            failuresBefore[w] = links[w].failures.sum();
            answers.add(ExpertServiceGrpc.newFutureStub(links[w].channel()).withDeadlineAfter(deadlineNanos, TimeUnit.NANOSECONDS)
                    .info(InfoRequest.getDefaultInstance()));
        }
        Map<String, Check> next = new HashMap<>();
        for (int w = 0; w < links.length; w++) {
            WorkerLink l = links[w];
            String reason = check(w, l, answers.get(w), deadlineNanos);
            next.put(l.address, new Check(reason == null, reason, failuresBefore[w]));
        }
        Map<String, Check> previous = checks;
        checks = next;
        if (log != null) {
            next.forEach((address, c) -> {
                Check was = previous.get(address);
                if (was != null && was.up() && !c.up()) {
                    log.println("epserve: expert worker " + address + " is down: " + c.reason());
                } else if (was != null && !was.up() && c.up()) {
                    log.println("epserve: expert worker " + address + " is up again");
                }
            });
        }
    }

    /** Why worker {@code w} cannot serve, or null when it can (assigning it again first when it needs that). */
    private String check(int w, WorkerLink l, ListenableFuture<InfoResponse> answer, long deadlineNanos) {
        InfoResponse info;
        try {
            info = answer.get(deadlineNanos + TimeUnit.SECONDS.toNanos(1), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            Status s = Status.fromThrowable(e.getCause());
            return s.getCode() == Status.Code.DEADLINE_EXCEEDED
                    ? "did not answer within " + dispatcher.config().deadline().toMillis() + " ms"
                    : "unreachable: " + LinkFailure.describe(s);
        } catch (TimeoutException e) {
            answer.cancel(true);
            return "did not answer within " + dispatcher.config().deadline().toMillis() + " ms";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "check interrupted";
        }
        if (!info.getModelFingerprint().equals(dispatcher.fingerprint())) {
            return "serves another model (" + info.getModelFingerprint() + ")";
        }
        return switch (info.getHolder()) {
            case HOLDER_CALLER -> info.getAssigned() ? null : assignAgain(w);
            case HOLDER_OTHER -> "held by another frontend";
            default -> assignAgain(w);
        };
    }

    private String assignAgain(int w) {
        try {
            dispatcher.reassign(w);
            return null;
        } catch (WorkerException e) {
            return "cannot be assigned again: " + e.getMessage();
        }
    }

    /** Every worker of the current placement, in order, as last seen; throws IllegalStateException once the dispatcher closed. */
    public List<WorkerState> states() {
        GrpcExpertDispatcher.Links current = dispatcher.links();
        Map<String, Check> seen = checks;
        List<WorkerState> out = new ArrayList<>();
        for (WorkerLink l : current.links()) {
            Check c = seen.get(l.address);
            if (c == null) {
                out.add(new WorkerState(l.address, false, "not checked yet"));
            } else if (l.failures.sum() > c.failuresBefore()) {
                String last = l.lastFailure;
                out.add(new WorkerState(l.address, false, "a dispatch failed since its last check" + (last == null ? "" : ": " + last)));
            } else {
                out.add(new WorkerState(l.address, c.up(), c.reason()));
            }
        }
        return out;
    }

    /** Up (true) or down per worker address, in placement order. */
    public Map<String, Boolean> up() {
        Map<String, Boolean> m = new LinkedHashMap<>();
        try {
            for (WorkerState s : states()) {
                m.put(s.worker(), s.up());
            }
        } catch (IllegalStateException closed) {
            // no workers to report once closed
        }
        return m;
    }

    /** Why the expert layer cannot serve now (naming every worker that is down), or null when it can. */
    public String notReadyReason() {
        List<WorkerState> states;
        try {
            states = states();
        } catch (IllegalStateException closed) {
            return "the expert dispatcher is closed";
        }
        List<String> down = new ArrayList<>();
        for (WorkerState s : states) {
            if (!s.up()) {
                down.add("expert worker " + s.worker() + " is down: " + s.reason());
            }
        }
        return down.isEmpty() ? null : String.join("; ", down);
    }

    @Override
    public void close() {
        timer.shutdownNow();
        try {
            timer.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
