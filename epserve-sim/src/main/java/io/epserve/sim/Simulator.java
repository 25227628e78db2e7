package io.epserve.sim;

import io.epserve.moe.DispatchPlan;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertRequest;
import io.epserve.moe.RoutingResult;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.PriorityQueue;
import java.util.SplittableRandom;

/**
 * A discrete-event model of batched decode with expert parallelism (DESIGN.md §1). Per step each
 * frontend runs, per layer and micro-batch: its own products (attention, router, shared expert or
 * dense MLP) as one task on its process; for a sparse layer the dispatch — one message per worker
 * holding any of the chosen experts, the worker's experts as one task on its process, one answer
 * back — and the combine once every answer is in; after the last layer the output head. A step
 * ends when every micro-batch has passed the head; the next starts at once (decode: each token
 * needs the last).
 *
 * <p>Resources: every process runs one task at a time, first come first served; cores are shared
 * by the runnable threads as a fair scheduler shares them ({@link Cpu}), by the processes' kernels
 * and by the messages' software at both ends; each host's link, per direction, first come first
 * served ({@link Network}). Drawn routing is split over the workers by the dispatcher's own
 * {@link DispatchPlan}, so replicas are chosen exactly as a real run chooses them; expected
 * (fractional) routing puts each expert whole on one replica, experts in decreasing token count
 * each to the replica whose worker has the fewest tokens so far.
 *
 * <p>With 0 workers each frontend runs its experts itself, after its products, with no message:
 * the single process, and a data-parallel replica. With the {@link Scenario.Workload#EXPERT_LAYERS}
 * workload a frontend has no products, other work or output head: a step is the sparse layers'
 * dispatches alone.
 */
public final class Simulator {
    private static final int HEADER_BYTES = 64;

    private final Scenario s;
    private final ModelShape m;
    private final Cluster c;
    /** The frontend runs its own products, other work and output head (else a step is the expert layers' dispatches alone). */
    private final boolean wholeModel;
    private final PriorityQueue<Event> events = new PriorityQueue<>();
    private long sequence;
    private double now;

    private final Proc[] frontends;
    private final Proc[] workers;
    private final CorePool[] pools;
    private final double[] egressFree;
    private final double[] ingressFree;
    private final double[][] shares;
    private final double[][] cumulative;
    private final List<Double> stepTimes = new ArrayList<>();
    /** The dispatcher's split of a layer's drawn routing, reused for every dispatch. */
    private final DispatchPlan plan;
    private long wireBytes;
    private long tokens;
    private double imbalanceSum;
    private long dispatches;

    private Simulator(Scenario s) {
        this.s = s;
        this.m = s.model();
        this.c = s.cluster();
        this.wholeModel = s.workload() == Scenario.Workload.DECODE;
        int hosts = c.hosts();
        pools = new CorePool[hosts];
        switch (c.cpu()) {
            // each process gets cores of its own below; a host's network stack never waits for a core
            case Cpu.Dedicated d -> Arrays.setAll(pools, h -> new CorePool(Double.POSITIVE_INFINITY));
            case Cpu.PerHost p -> Arrays.setAll(pools, h -> new CorePool(p.cores()));
            case Cpu.OneMachine o -> Arrays.fill(pools, new CorePool(o.cores()));
        }
        boolean dedicated = c.cpu() instanceof Cpu.Dedicated;
        frontends = new Proc[c.frontends()];
        for (int f = 0; f < frontends.length; f++) {
            int h = c.frontendHost(f);
            frontends[f] = new Proc(h, c.frontendThreads(), dedicated ? new CorePool(c.frontendThreads()) : pools[h]);
        }
        workers = new Proc[c.workers()];
        for (int w = 0; w < workers.length; w++) {
            int h = c.workerHost(w);
            workers[w] = new Proc(h, c.workerThreads(), dedicated ? new CorePool(c.workerThreads()) : pools[h]);
        }
        plan = DispatchPlan.reusable(Math.max(1, c.workers()));
        egressFree = new double[hosts];
        ingressFree = new double[hosts];
        shares = new double[m.layers()][];
        cumulative = new double[m.layers()][];
        for (int l = 0; l < m.layers(); l++) {
            if (m.isSparse(l)) {
                shares[l] = s.popularity().shares(l);
                cumulative[l] = new double[m.experts()];
                double acc = 0;
                for (int e = 0; e < m.experts(); e++) {
                    acc += shares[l][e];
                    cumulative[l][e] = acc;
                }
            }
        }
    }

    /** Runs the scenario to the end of every frontend's steps. */
    public static SimResult run(Scenario s) {
        return new Simulator(s).simulate();
    }

    private SimResult simulate() {
        List<FrontendLoop> loops = new ArrayList<>();
        for (int f = 0; f < frontends.length; f++) {
            FrontendLoop loop = new FrontendLoop(f, new SplittableRandom(s.seed() * 1_000_003L + f));
            loops.add(loop);
            loop.startStep();
        }
        while (!events.isEmpty()) {
            Event e = events.poll();
            now = e.time;
            e.action.run();
        }
        double[] sorted = stepTimes.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        double mean = Arrays.stream(sorted).average().orElse(0);
        double[] wu = new double[workers.length];
        for (int w = 0; w < wu.length; w++) {
            wu[w] = workers[w].busy / now;
        }
        double[] fu = new double[frontends.length];
        for (int f = 0; f < fu.length; f++) {
            fu[f] = frontends[f].busy / now;
        }
        return new SimResult(tokens / now, percentile(sorted, 0.50), percentile(sorted, 0.90), percentile(sorted, 0.99), mean, wu, fu,
                (double) wireBytes / tokens, dispatches == 0 ? 1 : imbalanceSum / dispatches, now);
    }

    static double percentile(double[] sorted, double q) {
        if (sorted.length == 0) {
            return 0;
        }
        int i = (int) Math.ceil(q * sorted.length) - 1;
        return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
    }

    private void at(double time, Runnable action) {
        events.add(new Event(time, sequence++, action));
    }

    /**
     * Delivers a message of {@code bytes} from host a to host b, then runs {@code then}: the
     * sender's software cost on one of its host's cores, the link (when the hosts differ), the
     * receiver's software cost on one of its host's cores, the hand-off.
     */
    private void send(int from, int to, long bytes, Runnable then) {
        Network n = s.network();
        wireBytes += bytes;
        double software = n.softwareSeconds(bytes);
        pools[from].run(software, 1, () -> {
            Runnable receive = () -> pools[to].run(software, 1, () -> at(now + n.handoffSeconds(), then));
            if (from == to) {
                receive.run();
                return;
            }
            double tx = n.transmitSeconds(bytes);
            double start = Math.max(now, egressFree[from]);
            egressFree[from] = start + tx;
            double arrive = Math.max(start + n.latencySeconds(), ingressFree[to]);
            ingressFree[to] = arrive + tx;
            at(arrive + tx, receive);
        });
    }

    /** One decode loop of one frontend: steps of one or two micro-batches through every layer. */
    private final class FrontendLoop {
        final int f;
        final SplittableRandom rng;
        final int[] microBatches;
        int step;
        double stepStart;
        int microBatchesLeft;

        FrontendLoop(int f, SplittableRandom rng) {
            this.f = f;
            this.rng = rng;
            microBatches = c.overlap() ? new int[] {c.batch() - c.batch() / 2, c.batch() / 2} : new int[] {c.batch()};
        }

        void startStep() {
            stepStart = now;
            microBatchesLeft = microBatches.length;
            for (int mb = 0; mb < microBatches.length; mb++) {
                layer(mb, 0);
            }
        }

        /** Queues the frontend's work of layer l for micro-batch mb. */
        void layer(int mb, int l) {
            int t = microBatches[mb];
            CostModel cost = s.cost();
            double work = wholeModel ? cost.frontendProductSeconds(m, l, t) : 0;
            double wall = wholeModel ? cost.frontendLayerSeconds() + cost.frontendTokenSeconds() * t : 0;
            boolean local = c.workers() == 0 && m.isSparse(l);
            Routed routed = m.isSparse(l) ? route(l, t) : null;
            if (local) {
                for (double n : routed.counts()) {
                    work += cost.expertSeconds(m, n);
                }
            }
            frontends[f].submit(work, wall, () -> {
                if (!m.isSparse(l) || local) {
                    next(mb, l);
                } else {
                    dispatch(mb, l, routed);
                }
            });
        }

        void next(int mb, int l) {
            if (l + 1 < m.layers()) {
                layer(mb, l + 1);
                return;
            }
            int t = microBatches[mb];
            double head = wholeModel ? s.cost().headSeconds(m, t) : 0;
            frontends[f].submit(head, 0, () -> {
                tokens += t;
                if (--microBatchesLeft == 0) {
                    stepTimes.add(now - stepStart);
                    if (++step < s.steps()) {
                        startStep();
                    }
                }
            });
        }

        /** Tokens per expert of one layer for t tokens (fractional with expected routing), and each token's experts when drawn. */
        Routed route(int l, int t) {
            int e = m.experts();
            int k = m.topK();
            double[] counts = new double[e];
            if (s.routing() == Scenario.Routing.EXPECTED) {
                for (int i = 0; i < e; i++) {
                    counts[i] = (double) t * k * s.popularity().share(l, i);
                }
                return new Routed(counts, null);
            }
            double[] share = shares[l];
            int[] choices = new int[t * k];
            for (int tok = 0; tok < t; tok++) {
                pickDistinct(share, cumulative[l], k, rng, choices, tok * k);
                for (int j = 0; j < k; j++) {
                    counts[choices[tok * k + j]]++;
                }
            }
            return new Routed(counts, choices);
        }

        void dispatch(int mb, int l, Routed routed) {
            int w = c.workers();
            double[] load = new double[w];
            double[] work = new double[w];
            double[] tokensTo = routed.choices() != null ? splitAsDispatcher(l, routed, microBatches[mb], load, work)
                    : splitExpected(l, routed, microBatches[mb], load, work);
            double maxLoad = 0;
            double sumLoad = 0;
            for (int i = 0; i < w; i++) {
                maxLoad = Math.max(maxLoad, load[i]);
                sumLoad += load[i];
            }
            if (sumLoad > 0) {
                imbalanceSum += maxLoad / (sumLoad / w);
                dispatches++;
            }
            int pending = 0;
            for (int i = 0; i < w; i++) {
                pending += tokensTo[i] > 0 ? 1 : 0;
            }
            if (pending == 0) {
                next(mb, l);
                return;
            }
            int[] left = {pending};
            int frontHost = frontends[f].host;
            long perValue = s.network().wireBytesPerValue();
            for (int wi = 0; wi < w; wi++) {
                if (tokensTo[wi] <= 0) {
                    continue;
                }
                double n = tokensTo[wi];
                long request = HEADER_BYTES + Math.round(n * (m.hidden() * perValue + m.topK() * 8L));
                long answer = HEADER_BYTES + Math.round(n * m.hidden() * perValue);
                Proc worker = workers[wi];
                double expertWork = work[wi];
                send(frontHost, worker.host, request, () -> worker.submit(expertWork, 0, () -> send(worker.host, frontHost, answer, () -> {
                    if (--left[0] == 0) {
                        next(mb, l);
                    }
                })));
            }
        }

        /**
         * Drawn routing, split over the workers by the dispatcher's own {@link DispatchPlan} (so
         * replicas are chosen exactly as a real run chooses them: with exact partials a replicated
         * expert's pairs are spread over its replicas, and each replica that starts reads the
         * expert's weights). Fills each worker's pairs (load) and expert time (work); returns the
         * tokens each worker receives.
         */
        double[] splitAsDispatcher(int l, Routed routed, int t, double[] load, double[] work) {
            int w = load.length;
            int k = m.topK();
            float[] weights = new float[t * k];
            Arrays.fill(weights, 1f / k);
            RoutingResult r = new RoutingResult(t, k, routed.choices(), weights);
            // hidden size 1: the plan's split does not depend on the activations, only on the routing
            plan.refill(l, new float[t], 1, r, s.placement(), s.network().wireBytesPerValue() == 4);
            double[] to = new double[w];
            int[] pairs = new int[m.experts()];
            for (int wi = 0; wi < w; wi++) {
                ExpertRequest q = plan.request(wi);
                if (q == null) {
                    continue;
                }
                to[wi] = q.tokens();
                load[wi] = q.pairs();
                Arrays.fill(pairs, 0);
                for (int i = 0; i < q.pairs(); i++) {
                    pairs[q.experts()[i]]++;
                }
                for (int e = 0; e < pairs.length; e++) {
                    if (pairs[e] > 0) {
                        work[wi] += s.cost().expertSeconds(m, pairs[e]);
                    }
                }
            }
            return to;
        }

        /**
         * Expected (fractional) routing: each expert whole on one replica, experts in decreasing
         * token count each to the replica whose worker has the fewest tokens so far.
         */
        double[] splitExpected(int l, Routed routed, int t, double[] load, double[] work) {
            double[] counts = routed.counts();
            ExpertPlacement p = s.placement();
            int e = m.experts();
            int[] owner = new int[e];
            Integer[] order = new Integer[e];
            for (int i = 0; i < e; i++) {
                order[i] = i;
            }
            Arrays.sort(order, (a, b) -> Double.compare(counts[b], counts[a]));
            for (int i : order) {
                int best = p.replica(l, i, 0);
                for (int r = 1; r < p.replicaCount(l, i); r++) {
                    int cand = p.replica(l, i, r);
                    if (load[cand] < load[best]) {
                        best = cand;
                    }
                }
                owner[i] = best;
                load[best] += counts[i];
                work[best] += s.cost().expertSeconds(m, counts[i]);
            }
            return expectedTokensPerWorker(routed, owner, t, load.length);
        }

        /** Distinct tokens each worker receives, expected: a token misses a worker only when all k of its experts are elsewhere. */
        double[] expectedTokensPerWorker(Routed routed, int[] owner, int t, int w) {
            double[] to = new double[w];
            double[] counts = routed.counts();
            int k = m.topK();
            double[] share = new double[w];
            for (int i = 0; i < counts.length; i++) {
                share[owner[i]] += counts[i] / ((double) t * k);
            }
            for (int wi = 0; wi < w; wi++) {
                to[wi] = share[wi] <= 0 ? 0 : t * (1 - Math.pow(Math.max(0, 1 - share[wi]), k));
            }
            return to;
        }
    }

    /**
     * k distinct experts drawn with probability proportional to their share, without replacement
     * (as a top-k of noisy router scores behaves); writes them to out[at..at+k). Draws by binary
     * search over the cumulative shares and redraws a repeat; after many repeats (a few experts
     * hold nearly all the share) falls back to a scan over the experts not yet taken.
     */
    static void pickDistinct(double[] share, double[] cumulative, int k, SplittableRandom rng, int[] out, int at) {
        int e = share.length;
        if (k == e) {
            for (int i = 0; i < e; i++) {
                out[at + i] = i;
            }
            return;
        }
        for (int j = 0; j < k; j++) {
            int chosen = -1;
            for (int attempt = 0; attempt < 64 && chosen < 0; attempt++) {
                double u = rng.nextDouble() * cumulative[e - 1];
                int i = Arrays.binarySearch(cumulative, u);
                i = i >= 0 ? Math.min(i + 1, e - 1) : -i - 1;
                if (share[i] > 0 && !taken(out, at, j, i)) {
                    chosen = i;
                }
            }
            if (chosen < 0) {
                double remaining = 0;
                for (int i = 0; i < e; i++) {
                    remaining += taken(out, at, j, i) ? 0 : share[i];
                }
                double u = rng.nextDouble() * remaining;
                double acc = 0;
                for (int i = 0; i < e; i++) {
                    if (taken(out, at, j, i)) {
                        continue;
                    }
                    chosen = i;
                    acc += share[i];
                    if (u < acc && share[i] > 0) {
                        break;
                    }
                }
            }
            out[at + j] = chosen;
        }
    }

    private static boolean taken(int[] out, int at, int n, int expert) {
        for (int i = 0; i < n; i++) {
            if (out[at + i] == expert) {
                return true;
            }
        }
        return false;
    }

    private record Event(double time, long seq, Runnable action) implements Comparable<Event> {
        @Override
        public int compareTo(Event o) {
            int t = Double.compare(time, o.time);
            return t != 0 ? t : Long.compare(seq, o.seq);
        }
    }

    /**
     * Cores shared by the threads that want them, as an operating system's fair scheduler shares
     * them (processor sharing): while threads t_1..t_n of n jobs are runnable on C cores, each
     * thread runs at min(1, C / Σt) of a core, so a job of w single-thread seconds on t threads
     * progresses at t·min(1, C / Σt). Alone on enough cores a job takes w / t; three runnable
     * threads on two cores each get two thirds of one.
     */
    private final class CorePool {
        final double capacity;
        final List<Job> running = new ArrayList<>();
        double last;
        long version;

        CorePool(double cores) {
            this.capacity = cores;
        }

        /** Runs {@code work} single-thread seconds on {@code threads} threads, then {@code done}. */
        void run(double work, int threads, Runnable done) {
            if (work <= 0) {
                // as an event, not a call: a long chain of free tasks must not grow the stack
                at(now, done);
                return;
            }
            advance();
            running.add(new Job(work, threads, done));
            reschedule();
        }

        private double perThread() {
            int threads = 0;
            for (Job j : running) {
                threads += j.threads;
            }
            return Math.min(1.0, capacity / threads);
        }

        /** Charges the time since the last change to every running job. */
        private void advance() {
            double dt = now - last;
            last = now;
            if (dt <= 0 || running.isEmpty()) {
                return;
            }
            double share = perThread();
            for (Job j : running) {
                j.remaining -= dt * j.threads * share;
            }
        }

        private void reschedule() {
            long v = ++version;
            if (running.isEmpty()) {
                return;
            }
            double share = perThread();
            double soonest = Double.POSITIVE_INFINITY;
            for (Job j : running) {
                soonest = Math.min(soonest, Math.max(0, j.remaining) / (j.threads * share));
            }
            at(now + soonest, () -> {
                if (v == version) {
                    finish();
                }
            });
        }

        /** Ends the jobs whose work is done (at least the one closest to done: rounding), then runs their continuations. */
        private void finish() {
            advance();
            List<Job> done = new ArrayList<>();
            Job closest = null;
            for (Job j : running) {
                if (j.remaining <= 1e-9 * j.work) {
                    done.add(j);
                }
                if (closest == null || j.remaining / j.threads < closest.remaining / closest.threads) {
                    closest = j;
                }
            }
            if (done.isEmpty()) {
                done.add(closest);
            }
            running.removeAll(done);
            reschedule();
            for (Job j : done) {
                j.done.run();
            }
        }
    }

    private static final class Job {
        final double work;
        final int threads;
        final Runnable done;
        double remaining;

        Job(double work, int threads, Runnable done) {
            this.work = work;
            this.threads = threads;
            this.done = done;
            this.remaining = work;
        }
    }

    /**
     * A process: runs its tasks one at a time, first come first served; a task's products on the
     * process's kernel threads, then its other work on one thread, both on the cores of its pool.
     */
    private final class Proc {
        final int host;
        final int threads;
        final CorePool pool;
        final ArrayDeque<Task> queue = new ArrayDeque<>();
        boolean running;
        double busy;

        Proc(int host, int threads, CorePool pool) {
            this.host = host;
            this.threads = threads;
            this.pool = pool;
        }

        /** Queues a task: {@code work} seconds on one thread (split over the process's threads) plus {@code serial} seconds on one thread. */
        void submit(double work, double serial, Runnable done) {
            queue.add(new Task(work, serial, done));
            if (!running) {
                startNext();
            }
        }

        private void startNext() {
            Task t = queue.poll();
            if (t == null) {
                running = false;
                return;
            }
            running = true;
            double start = now;
            pool.run(t.work, threads, () -> pool.run(t.wall, 1, () -> {
                busy += now - start;
                t.done.run();
                startNext();
            }));
        }
    }

    private record Task(double work, double wall, Runnable done) {}

    /** One layer's routing of one micro-batch: tokens per expert, and each token's k experts (null when expected). */
    private record Routed(double[] counts, int[] choices) {}
}
