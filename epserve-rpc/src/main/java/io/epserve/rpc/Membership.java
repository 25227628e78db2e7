package io.epserve.rpc;

import com.google.common.util.concurrent.ListenableFuture;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.PlacementControl;
import io.epserve.moe.RoutedTokens;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.WorkerState;
import io.grpc.Status;
import java.io.PrintStream;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Queue;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The frontend's table of expert workers and the one place that decides whether each can serve
 * (DESIGN.md §1): every worker has a {@link State}, a host label, a capacity, and what the checks
 * saw (round trip, last load time). Liveness comes from heartbeats: every interval each worker is
 * asked Info (bounded by a deadline), which also renews this frontend's lease on it. A missed
 * check or a failed dispatch makes a worker {@link State#SUSPECT}; {@code deadAfterMisses} misses
 * in a row, or a connection refused for {@code deadAfterRefused}, make it {@link State#DEAD}.
 *
 * <p>Membership drives the placement: a worker that is dead or draining is placed out (a new
 * epoch over the live workers, every expert back to its replica count under the configured
 * policy: see {@link Placer}), which also ends the frontend's local computing ({@link Failover})
 * since the placement no longer names the dead worker; a worker that answers again (restarted on
 * its address) or joins ({@link #join}) is {@link State#JOINING} until the next epoch gives it
 * experts, then {@link State#SERVING}. A draining worker is released once placed out, and leaves
 * the table. Placement changes run one at a time on their own thread, through the dispatcher's
 * live {@link GrpcExpertDispatcher#updatePlacement} (no step waits for one), and the rebalancer
 * goes through {@link #updatePlacement} here too, so the two never race.
 *
 * <p>Reading the table ({@link #view()}, {@link #notReadyReason()}) does no I/O.
 */
public final class Membership implements PlacementControl, AutoCloseable {

    /** A worker's state in the table. */
    public enum State {
        /** Answers its checks, holds no experts yet: the next epoch gives it some. */
        JOINING,
        /** Answers its checks and holds experts of the serving epoch. */
        SERVING,
        /** Leaving: placed out at the next epoch, then released. */
        DRAINING,
        /** Missed its last check or failed a dispatch: not placed out yet. */
        SUSPECT,
        /** Missed too many checks (or refuses connections): placed out; still checked, in case it comes back. */
        DEAD;

        /** The lower-case name used in JSON and metrics. */
        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    /** The placement over a given set of live workers, under the frontend's configured policy. */
    @FunctionalInterface
    public interface Placer {
        /**
         * @param workers the live workers, in order
         * @param hosts   a host label per worker, or null when the workers have none
         * @param window  the routed tokens of the load window (the balanced policy packs by it)
         */
        ExpertPlacement place(List<String> workers, List<String> hosts, ExpertLoad window, long epoch);
    }

    /**
     * How liveness is decided.
     *
     * @param interval         time between two rounds of checks
     * @param checkDeadline    how long one check (Info) may take
     * @param deadAfterMisses  missed checks in a row that make a worker dead
     * @param deadAfterRefused how long a worker may refuse connections before it is dead
     */
    public record Settings(Duration interval, Duration checkDeadline, int deadAfterMisses, Duration deadAfterRefused) {
        public static final Duration DEFAULT_INTERVAL = Duration.ofSeconds(1);
        public static final int DEFAULT_MISSES = 3;
        public static final Duration DEFAULT_REFUSED = Duration.ofSeconds(2);

        public Settings {
            Objects.requireNonNull(interval, "interval");
            Objects.requireNonNull(checkDeadline, "checkDeadline");
            Objects.requireNonNull(deadAfterRefused, "deadAfterRefused");
            if (interval.isNegative() || interval.isZero()) {
                throw new IllegalArgumentException("worker check interval must be positive, got " + interval);
            }
            if (checkDeadline.isNegative() || checkDeadline.isZero()) {
                throw new IllegalArgumentException("worker check deadline must be positive, got " + checkDeadline);
            }
            if (deadAfterMisses < 1) {
                throw new IllegalArgumentException("a worker is dead after at least 1 missed check, got " + deadAfterMisses);
            }
            if (deadAfterRefused.isNegative()) {
                throw new IllegalArgumentException("refused-connection time must be 0 or more, got " + deadAfterRefused);
            }
        }

        /** A check waits at most this long by default: a busy worker answers Info after the Compute calls queued before it. */
        public static final Duration MAX_CHECK_DEADLINE = Duration.ofSeconds(5);

        /** Checks every second, each within the dispatch deadline but at most 5 s; dead after 3 misses or 2 s refused. */
        public static Settings defaults(Duration dispatchDeadline) {
            Duration d = dispatchDeadline.compareTo(MAX_CHECK_DEADLINE) < 0 ? dispatchDeadline : MAX_CHECK_DEADLINE;
            return new Settings(DEFAULT_INTERVAL, d, DEFAULT_MISSES, DEFAULT_REFUSED);
        }

        public Settings withInterval(Duration d) {
            return new Settings(d, checkDeadline, deadAfterMisses, deadAfterRefused);
        }

        public Settings withDeadAfterMisses(int k) {
            return new Settings(interval, checkDeadline, k, deadAfterRefused);
        }
    }

    /**
     * One row of the table.
     *
     * @param experts     (layer, expert) replicas it holds in the serving epoch
     * @param rttMillis   round trip of its last good check, -1 before any
     * @param load        its share of the routed (token, expert) pairs in the load window, 0..1
     * @param calls       dispatch calls since it entered the placement
     * @param failures    dispatch calls it failed since then
     * @param loadMillis  how long its last Assign took to map and check its experts, -1 before any
     * @param fromCache   whether those experts came from the converted-experts cache
     * @param mapped      experts its last Assign had to map (0: it held them all already)
     * @param since       when it entered its state
     * @param reason      why it is suspect or dead (the last failure), or empty
     */
    public record Member(String address, String host, State state, int capacity, int experts, double rttMillis, double load,
                         long calls, long failures, double loadMillis, boolean fromCache, int mapped, Instant since,
                         String reason, boolean joined) {}

    /** The table as of now: the serving epoch and every worker, those of the placement first. */
    public record View(long epoch, List<Member> members) {}

    /** One worker's mutable row; guarded by the membership's monitor. */
    private static final class Entry {
        final String address;
        String host = "";
        int capacity;
        boolean joined;
        State state;
        Instant since = Instant.now();
        String reason = "";
        int misses;
        long refusedSinceNanos = -1;
        double rttMillis = -1;
        double loadMillis = -1;
        boolean fromCache;
        int mapped;

        Entry(String address, State state) {
            this.address = address;
            this.state = state;
        }
    }

    private final GrpcExpertDispatcher dispatcher;
    private final Placer placer;
    private final Settings settings;
    private final PrintStream log;
    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private final ScheduledExecutorService timer;
    private final ScheduledExecutorService changes;
    /** One placement change at a time: membership's own and the rebalancer's. */
    private final ReentrantLock changeLock = new ReentrantLock();
    private final AtomicBoolean changeQueued = new AtomicBoolean();
    private final AtomicBoolean checkQueued = new AtomicBoolean();
    private final Queue<String> failed = new ConcurrentLinkedQueue<>();
    private volatile Runnable onEpochChange = () -> { };
    private volatile boolean closed;

    /**
     * @param hosts the host label of each worker of the starting placement, or null/empty for none
     * @param log   where state changes and re-placements are said (one line each), or null
     */
    public Membership(GrpcExpertDispatcher dispatcher, Placer placer, Settings settings, Map<String, String> hosts, PrintStream log) {
        this.dispatcher = Objects.requireNonNull(dispatcher, "dispatcher");
        this.placer = Objects.requireNonNull(placer, "placer");
        this.settings = Objects.requireNonNull(settings, "settings");
        this.log = log;
        for (String w : dispatcher.placement().workers()) {
            Entry e = new Entry(w, State.SERVING);
            e.reason = "not checked yet";
            e.misses = 0;
            if (hosts != null && hosts.get(w) != null) {
                e.host = hosts.get(w);
            }
            entries.put(w, e);
        }
        this.timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-membership-checks");
            t.setDaemon(true);
            return t;
        });
        this.changes = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-membership-placement");
            t.setDaemon(true);
            return t;
        });
        dispatcher.onWorkerFailure(this::dispatchFailed);
    }

    /** Checks every worker once now, then every interval in the background. */
    public Membership start() {
        checkNow();
        timer.scheduleWithFixedDelay(this::checkQuietly, settings.interval().toNanos(), settings.interval().toNanos(), TimeUnit.NANOSECONDS);
        return this;
    }

    /** Run after every placement change this membership or the rebalancer made (the state directory saves then). */
    public void onEpochChange(Runnable r) {
        this.onEpochChange = Objects.requireNonNull(r, "r");
    }

    private void checkQuietly() {
        checkQueued.set(false);
        try {
            checkNow();
        } catch (IllegalStateException closedDispatcher) {
            timer.shutdown(); // the dispatcher closed: nothing left to watch
        } catch (RuntimeException e) {
            say("epserve: worker check failed: " + e);
        }
    }

    // ------------------------------------------------------------------ checks

    /** One round of checks, all workers at once; returns when each answered or its deadline passed. Queues a re-placement when one is due. */
    public void checkNow() {
        markFailed();
        List<String> addresses;
        synchronized (this) {
            addresses = new ArrayList<>(entries.keySet());
        }
        List<ListenableFuture<InfoResponse>> answers = new ArrayList<>();
        long[] sent = new long[addresses.size()];
        for (int i = 0; i < addresses.size(); i++) {
            sent[i] = System.nanoTime();
            answers.add(dispatcher.infoAsync(addresses.get(i), settings.checkDeadline()));
        }
        boolean due = false;
        for (int i = 0; i < addresses.size(); i++) {
            due |= observe(addresses.get(i), answers.get(i), sent[i]);
        }
        if (due) {
            queueChange();
        }
    }

    /** Applies one check's outcome to the table; true when the placement should change. */
    private boolean observe(String address, ListenableFuture<InfoResponse> answer, long sentNanos) {
        InfoResponse info = null;
        String failure = null;
        boolean unreachable = false;
        try {
            info = answer.get(settings.checkDeadline().toNanos() + TimeUnit.SECONDS.toNanos(1), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            Status s = Status.fromThrowable(e.getCause());
            unreachable = s.getCode() == Status.Code.UNAVAILABLE;
            failure = s.getCode() == Status.Code.DEADLINE_EXCEEDED
                    ? "did not answer within " + settings.checkDeadline().toMillis() + " ms"
                    : "unreachable: " + LinkFailure.describe(s);
        } catch (TimeoutException e) {
            answer.cancel(true);
            failure = "did not answer within " + settings.checkDeadline().toMillis() + " ms";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
        double rtt = (System.nanoTime() - sentNanos) / 1e6;
        if (unreachable) {
            // a fresh connection at the next check, not one waiting out gRPC's reconnect backoff
            dispatcher.resetConnection(address);
        }
        if (info != null) {
            failure = refusal(info);
        }
        int index = dispatcher.placement().workers().indexOf(address);
        if (info != null && failure == null && index >= 0 && info.getState() != WorkerState.WORKER_STATE_DRAINING
                && (info.getHolder() != Holder.HOLDER_CALLER || !info.getAssigned())) {
            failure = assignAgain(index);
        }
        synchronized (this) {
            Entry e = entries.get(address);
            if (e == null) {
                return false;
            }
            if (failure != null) {
                return missed(e, failure, unreachable, index >= 0);
            }
            e.misses = 0;
            e.refusedSinceNanos = -1;
            e.rttMillis = rtt;
            e.loadMillis = info.getLastAssignNanos() / 1e6;
            e.fromCache = info.getLastAssignFromConvertedCache();
            e.mapped = info.getLastAssignExpertsMapped();
            if (info.getState() == WorkerState.WORKER_STATE_DRAINING) {
                if (e.state != State.DRAINING) {
                    move(e, State.DRAINING, "the worker drains");
                }
                return true;
            }
            if (index >= 0) {
                if (e.state != State.SERVING && e.state != State.DRAINING) {
                    move(e, State.SERVING, "");
                }
                return false;
            }
            if (e.state == State.DRAINING) {
                return false; // left the placement; its Release ends it
            }
            if (e.state != State.JOINING) {
                move(e, State.JOINING, "answers again; experts come with the next epoch");
            }
            return true;
        }
    }

    /** Why this frontend cannot use a worker that answered {@code info}, or null. */
    private String refusal(InfoResponse info) {
        if (!info.getModelFingerprint().equals(dispatcher.fingerprint())) {
            return "serves another model (" + info.getModelFingerprint() + ")";
        }
        if (info.getHolder() == Holder.HOLDER_OTHER) {
            return "held by another frontend";
        }
        return null;
    }

    /** A worker of the placement that lost its share (it restarted, or was released): assigned again at once. */
    private String assignAgain(int index) {
        try {
            dispatcher.reassign(index);
            return null;
        } catch (WorkerException e) {
            return "cannot be assigned again: " + e.getMessage();
        } catch (IndexOutOfBoundsException e) {
            return null; // the placement changed meanwhile: the next check looks again
        }
    }

    /** A missed check: suspect, or dead after enough; true when the placement should change. */
    private boolean missed(Entry e, String failure, boolean unreachable, boolean placed) {
        e.misses++;
        long now = System.nanoTime();
        if (unreachable && e.refusedSinceNanos < 0) {
            e.refusedSinceNanos = now;
        } else if (!unreachable) {
            e.refusedSinceNanos = -1;
        }
        if (e.state == State.DRAINING) {
            if (!placed) {
                entries.remove(e.address); // it drained and went away before its Release
                dispatcher.dropProbe(e.address);
                say("epserve: expert worker " + e.address + " left");
            }
            e.reason = failure;
            return false;
        }
        boolean dead = e.misses >= settings.deadAfterMisses()
                || (e.refusedSinceNanos >= 0 && now - e.refusedSinceNanos >= settings.deadAfterRefused().toNanos());
        if (dead) {
            if (e.state != State.DEAD) {
                move(e, State.DEAD, failure);
            }
            e.reason = failure;
            return placed;
        }
        if (e.state != State.SUSPECT) {
            move(e, State.SUSPECT, failure);
        }
        e.reason = failure;
        return false;
    }

    /**
     * A dispatch to {@code address} failed: suspect, and checked again at once (not at the next
     * interval). Called on the dispatching thread, which may hold the dispatcher's lock: the table
     * is changed on the check thread.
     */
    private void dispatchFailed(String address) {
        failed.add(address);
        if (!closed && checkQueued.compareAndSet(false, true)) {
            try {
                timer.execute(this::checkQuietly);
            } catch (RuntimeException rejected) {
                checkQueued.set(false); // closing
            }
        }
    }

    /** Marks the workers whose dispatches failed since the last look suspect. */
    private void markFailed() {
        for (String address; (address = failed.poll()) != null; ) {
            String why = "a dispatch failed";
            for (WorkerLink l : dispatcher.links().links()) {
                if (l.address.equals(address) && l.lastFailure != null) {
                    why += ": " + l.lastFailure;
                }
            }
            synchronized (this) {
                Entry e = entries.get(address);
                if (e != null && (e.state == State.SERVING || e.state == State.JOINING)) {
                    move(e, State.SUSPECT, why);
                }
            }
        }
    }

    private void move(Entry e, State to, String reason) {
        State from = e.state;
        e.state = to;
        e.since = Instant.now();
        e.reason = reason;
        if (from != to) {
            say("epserve: expert worker " + e.address + " is " + to.label() + (reason.isEmpty() ? "" : ": " + reason));
        }
    }

    // ------------------------------------------------------------------ join and leave

    /** What a Join did: whether the worker is new to the table, and the serving epoch. */
    public record Joined(boolean added, long epoch) {}

    /**
     * A worker registers ({@code epserve worker --join}): checked first (it answers Info within
     * the check deadline, serves this frontend's model, no other frontend holds it), then
     * {@link State#JOINING} until the next epoch, which is queued at once. A worker the table knows
     * already only updates its host label and capacity (joins repeat as heartbeats).
     *
     * @throws IllegalArgumentException naming the worker when this frontend cannot use it
     */
    public Joined join(String address, String host, int capacity) {
        HostPort.parse(address, "join address");
        synchronized (this) {
            Entry e = entries.get(address);
            if (e != null && e.state != State.DEAD && e.state != State.DRAINING) {
                e.joined = true;
                e.host = host == null ? "" : host;
                e.capacity = capacity;
                return new Joined(false, dispatcher.placement().epoch());
            }
        }
        String why;
        try {
            InfoResponse info = dispatcher.infoAsync(address, settings.checkDeadline())
                    .get(settings.checkDeadline().toNanos() + TimeUnit.SECONDS.toNanos(1), TimeUnit.NANOSECONDS);
            why = info.getState() == WorkerState.WORKER_STATE_DRAINING ? "it is draining" : refusal(info);
        } catch (ExecutionException e) {
            why = "this frontend cannot reach it at " + address + ": " + LinkFailure.describe(Status.fromThrowable(e.getCause()));
        } catch (TimeoutException e) {
            why = "it did not answer within " + settings.checkDeadline().toMillis() + " ms";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            why = "interrupted";
        }
        boolean known;
        synchronized (this) {
            known = entries.containsKey(address);
        }
        if (why != null) {
            if (!known) {
                dispatcher.dropProbe(address);
            }
            throw new IllegalArgumentException("worker " + address + " cannot join: " + why);
        }
        synchronized (this) {
            Entry e = entries.computeIfAbsent(address, a -> new Entry(a, State.JOINING));
            e.joined = true;
            e.host = host == null ? "" : host;
            e.capacity = capacity;
            e.misses = 0;
            e.refusedSinceNanos = -1;
            if (e.state != State.JOINING) {
                move(e, State.JOINING, "joined; experts come with the next epoch");
            } else {
                say("epserve: expert worker " + address + (e.host.isEmpty() ? "" : " (host " + e.host + ")") + " joined; experts "
                        + "come with the next epoch");
            }
        }
        queueChange();
        return new Joined(true, dispatcher.placement().epoch());
    }

    /** A worker leaves (it drains): placed out at the next epoch, then released. False when the table does not know it. */
    public boolean leave(String address) {
        boolean placed = dispatcher.placement().workers().contains(address);
        synchronized (this) {
            Entry e = entries.get(address);
            if (e == null) {
                return false;
            }
            if (!placed) {
                entries.remove(address);
                dispatcher.dropProbe(address);
                say("epserve: expert worker " + address + " left");
                return true;
            }
            if (e.state != State.DRAINING) {
                move(e, State.DRAINING, "it leaves");
            }
        }
        queueChange();
        return true;
    }

    // ------------------------------------------------------------------ placement changes

    /** Queues one placement change on the change thread (several requests before it runs make one change). */
    private void queueChange() {
        if (closed || !changeQueued.compareAndSet(false, true)) {
            return;
        }
        try {
            changes.execute(() -> {
                changeQueued.set(false);
                try {
                    reconcile();
                } catch (RuntimeException e) {
                    say("epserve: placement change failed: " + e.getMessage());
                }
            });
        } catch (RuntimeException rejected) {
            changeQueued.set(false); // closing
        }
    }

    /**
     * Moves the placement to the live workers when they differ from the placement's: dead and
     * draining ones out, joining ones in. Returns the epoch serving afterwards.
     */
    long reconcile() {
        changeLock.lock();
        try {
            if (closed) {
                return dispatcher.placement().epoch();
            }
            ExpertPlacement current = dispatcher.placement();
            List<String> live = new ArrayList<>();
            List<String> out = new ArrayList<>();
            List<String> in = new ArrayList<>();
            synchronized (this) {
                for (String w : current.workers()) {
                    Entry e = entries.get(w);
                    if (e != null && (e.state == State.DEAD || e.state == State.DRAINING)) {
                        out.add(w);
                    } else {
                        live.add(w);
                    }
                }
                for (Entry e : entries.values()) {
                    if (e.state == State.JOINING && !current.workers().contains(e.address)) {
                        live.add(e.address);
                        in.add(e.address);
                    }
                }
            }
            if (out.isEmpty() && in.isEmpty()) {
                return current.epoch();
            }
            if (live.isEmpty()) {
                say("epserve: no live expert worker to place experts on (" + String.join(", ", out) + " out): epoch "
                        + current.epoch() + " stays; the frontend computes the experts itself until a worker answers");
                return current.epoch();
            }
            ExpertPlacement next = placer.place(live, hostLabels(live), routedTokens().window(), current.epoch() + 1);
            long t0 = System.nanoTime();
            try {
                dispatcher.updatePlacement(next);
            } catch (WorkerException e) {
                synchronized (this) {
                    Entry x = entries.get(e.worker());
                    if (x != null && x.state != State.DEAD) {
                        move(x, State.SUSPECT, e.getMessage());
                    }
                }
                say("epserve: placement epoch " + next.epoch() + " abandoned, epoch " + current.epoch() + " serves on: " + e.getMessage());
                return current.epoch();
            }
            synchronized (this) {
                for (String w : in) {
                    Entry e = entries.get(w);
                    if (e != null && e.state == State.JOINING) {
                        move(e, State.SERVING, "");
                    }
                }
                for (String w : out) {
                    Entry e = entries.get(w);
                    if (e != null && e.state == State.DRAINING) {
                        // the dispatcher released it when it closed the dropped link
                        entries.remove(w);
                        say("epserve: expert worker " + w + " drained and was released");
                    }
                }
            }
            say(String.format(Locale.ROOT, "epserve: placement epoch %d over %d worker(s)%s%s in %.2f s", next.epoch(), live.size(),
                    out.isEmpty() ? "" : ", without " + String.join(", ", out), in.isEmpty() ? "" : ", with " + String.join(", ", in),
                    (System.nanoTime() - t0) / 1e9));
            epochChanged();
            return next.epoch();
        } finally {
            changeLock.unlock();
        }
    }

    private void epochChanged() {
        try {
            onEpochChange.run();
        } catch (RuntimeException e) {
            say("epserve: after the placement change: " + e.getMessage());
        }
    }

    @Override
    public ExpertPlacement placement() {
        return dispatcher.placement();
    }

    @Override
    public RoutedTokens routedTokens() {
        return dispatcher.routedTokens();
    }

    /**
     * A change from outside (the rebalancer), one at a time with membership's own: refused when it
     * names a worker that is dead, draining or unknown.
     */
    @Override
    public void updatePlacement(ExpertPlacement next) {
        changeLock.lock();
        try {
            synchronized (this) {
                for (String w : next.workers()) {
                    Entry e = entries.get(w);
                    if (e == null || e.state == State.DEAD || e.state == State.DRAINING) {
                        throw new IllegalStateException("worker " + w + (e == null ? " is not a member" : " is " + e.state.label()));
                    }
                }
            }
            dispatcher.updatePlacement(next);
            synchronized (this) {
                for (String w : next.workers()) {
                    Entry e = entries.get(w);
                    if (e != null && e.state == State.JOINING) {
                        move(e, State.SERVING, "");
                    }
                }
            }
            epochChanged();
        } finally {
            changeLock.unlock();
        }
    }

    /** The host label of each worker, or null when none has one (no host grouping). */
    @Override
    public synchronized List<String> hostLabels(List<String> workers) {
        List<String> hosts = new ArrayList<>();
        boolean any = false;
        for (String w : workers) {
            Entry e = entries.get(w);
            String h = e == null ? "" : e.host;
            any |= !h.isEmpty();
            hosts.add(h);
        }
        return any ? hosts : null;
    }

    // ------------------------------------------------------------------ views

    /** The table now: the serving epoch, then every worker (the placement's in order, then the others). */
    public View view() {
        ExpertPlacement p = dispatcher.placement();
        Map<String, DispatchStats.Worker> stats = new LinkedHashMap<>();
        for (DispatchStats.Worker w : dispatcher.stats().workers()) {
            stats.put(w.address(), w);
        }
        double[] share = loadShares(p, routedTokens().window());
        List<Member> out = new ArrayList<>();
        synchronized (this) {
            Set<String> done = new HashSet<>();
            for (int w = 0; w < p.workerCount(); w++) {
                Entry e = entries.get(p.workers().get(w));
                if (e != null) {
                    out.add(member(e, p.expertCountOn(w), share[w], stats.get(e.address)));
                    done.add(e.address);
                }
            }
            for (Entry e : entries.values()) {
                if (!done.contains(e.address)) {
                    out.add(member(e, 0, 0, null));
                }
            }
        }
        return new View(p.epoch(), out);
    }

    private static Member member(Entry e, int experts, double load, DispatchStats.Worker s) {
        return new Member(e.address, e.host, e.state, e.capacity, experts, e.rttMillis, load, s == null ? 0 : s.calls(),
                s == null ? 0 : s.failures(), e.loadMillis, e.fromCache, e.mapped, e.since, e.reason, e.joined);
    }

    /** Per worker of {@code p}, its share of the window's routed pairs (replicas split an expert's tokens evenly). */
    static double[] loadShares(ExpertPlacement p, ExpertLoad window) {
        double[] per = new double[p.workerCount()];
        double total = 0;
        ExpertLoad load = window.forModel(sparse(p), p.numExperts());
        for (int l = 0; l < p.layers(); l++) {
            if (!p.isSparse(l)) {
                continue;
            }
            double[] w = p.workerLoads(load, l);
            for (int i = 0; i < w.length; i++) {
                per[i] += w[i];
                total += w[i];
            }
        }
        for (int i = 0; i < per.length && total > 0; i++) {
            per[i] /= total;
        }
        return per;
    }

    private static boolean[] sparse(ExpertPlacement p) {
        boolean[] s = new boolean[p.layers()];
        for (int l = 0; l < s.length; l++) {
            s[l] = p.isSparse(l);
        }
        return s;
    }

    /** Why the expert layer cannot serve now (naming every worker of the placement that is suspect or dead), or null. */
    public String notReadyReason() {
        ExpertPlacement p;
        try {
            p = dispatcher.placement();
            dispatcher.links();
        } catch (IllegalStateException closedDispatcher) {
            return "the expert dispatcher is closed";
        }
        List<String> down = new ArrayList<>();
        synchronized (this) {
            for (String w : p.workers()) {
                Entry e = entries.get(w);
                if (e == null || e.state == State.SUSPECT || e.state == State.DEAD) {
                    down.add("expert worker " + w + " is down: " + (e == null ? "not checked yet" : e.reason));
                }
            }
        }
        return down.isEmpty() ? null : String.join("; ", down);
    }

    /** Up (serving, joining or draining) or not per worker address: every worker of the table. */
    public synchronized Map<String, Boolean> up() {
        Map<String, Boolean> m = new LinkedHashMap<>();
        for (Entry e : entries.values()) {
            m.put(e.address, e.state == State.SERVING || e.state == State.JOINING || e.state == State.DRAINING);
        }
        return m;
    }

    /** Each worker's state, for the {@code epserve_worker_state} gauge. */
    public synchronized Map<String, State> states() {
        Map<String, State> m = new LinkedHashMap<>();
        entries.values().forEach(e -> m.put(e.address, e.state));
        return m;
    }

    /** The host label of each worker that has one (the state directory keeps them). */
    public synchronized Map<String, String> hosts() {
        Map<String, String> m = new LinkedHashMap<>();
        entries.values().stream().filter(e -> !e.host.isEmpty()).forEach(e -> m.put(e.address, e.host));
        return m;
    }

    public String frontendId() {
        return dispatcher.frontendId();
    }

    private void say(String line) {
        if (log != null) {
            log.println(line);
            log.flush();
        }
    }

    @Override
    public void close() {
        closed = true;
        timer.shutdownNow();
        changes.shutdownNow();
        try {
            timer.awaitTermination(5, TimeUnit.SECONDS);
            changes.awaitTermination(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
