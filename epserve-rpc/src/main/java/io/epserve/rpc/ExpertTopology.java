package io.epserve.rpc;

import io.epserve.moe.BalancedPlacement;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertShards;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWorker;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.MoeShape;
import io.epserve.moe.RoutedTokens;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.function.Supplier;
import java.util.stream.IntStream;

/**
 * Where the routed experts run, as one validated value built once from the options (DESIGN.md
 * §3.11) and turned into a dispatcher in one place, {@link #dispatcher}: in-process workers or
 * remote worker processes, the placement policy (with its redundant slots for
 * {@link ExpertPlacement.Policy#BALANCED}), expert shards, the sliding load window, and for
 * remote workers the wire dtype, deadlines and security ({@link GrpcExpertDispatcher.Config}).
 *
 * @param workers          in-process or remote
 * @param policy           how experts are placed at start
 * @param redundantExperts extra expert slots per worker and layer for the balanced policy
 * @param shards           slices per expert (in-process only), 1 = whole experts
 * @param loadWindow       steps of the sliding window of routed tokens
 * @param remote           the gRPC settings (used with remote workers)
 */
public record ExpertTopology(Workers workers, ExpertPlacement.Policy policy, int redundantExperts, int shards, int loadWindow,
                             GrpcExpertDispatcher.Config remote) {

    /** The expert workers: in this process, or remote processes at host:port addresses. */
    public sealed interface Workers {
        int count();
    }

    /** {@code n} workers in this process sharing the frontend's mapped weights. */
    public record InProcess(int n) implements Workers {
        public InProcess {
            if (n < 1) {
                throw new IllegalArgumentException("--ep must be at least 1, got " + n);
            }
        }

        @Override
        public int count() {
            return n;
        }
    }

    /** Remote workers ({@code epserve worker}), by address. */
    public record Remote(List<String> addresses) implements Workers {
        public Remote {
            if (addresses.isEmpty()) {
                throw new IllegalArgumentException("--workers needs at least one address");
            }
            for (String a : addresses) {
                HostPort.parse(a, "--workers");
            }
            if (addresses.stream().distinct().count() != addresses.size()) {
                throw new IllegalArgumentException("--workers lists an address twice: " + addresses);
            }
            addresses = List.copyOf(addresses);
        }

        @Override
        public int count() {
            return addresses.size();
        }
    }

    public ExpertTopology {
        Objects.requireNonNull(workers, "workers");
        Objects.requireNonNull(policy, "policy");
        Objects.requireNonNull(remote, "remote");
        if (redundantExperts < 0) {
            throw new IllegalArgumentException("--redundant-experts must be 0 or more, got " + redundantExperts);
        }
        if (redundantExperts > 0 && policy != ExpertPlacement.Policy.BALANCED) {
            throw new IllegalArgumentException("--redundant-experts needs --policy balanced");
        }
        if (loadWindow < 1) {
            throw new IllegalArgumentException("--load-window must be at least 1 step, got " + loadWindow);
        }
        if (shards < 1 || shards > workers.count()) {
            throw new IllegalArgumentException("--expert-shards must be between 1 and the number of workers (" + workers.count()
                    + "), got " + shards);
        }
        if (shards > 1 && !(workers instanceof InProcess)) {
            throw new IllegalArgumentException("--expert-shards runs on in-process workers (--ep); remote workers hold whole experts");
        }
        if (shards > 1 && policy == ExpertPlacement.Policy.BALANCED) {
            throw new IllegalArgumentException("--expert-shards places shards, not whole experts: use another --policy");
        }
    }

    /** One in-process worker holding every expert: the single-process engine. */
    public static ExpertTopology single() {
        return new ExpertTopology(new InProcess(1), ExpertPlacement.Policy.CONTIGUOUS, 0, 1, RoutedTokens.DEFAULT_WINDOW_STEPS,
                GrpcExpertDispatcher.Config.defaults());
    }

    /** The placement of epoch {@code epoch} over these worker names at start (balanced: under a uniform load). */
    public ExpertPlacement initialPlacement(MoeShape shape, List<String> names, long epoch) {
        if (policy == ExpertPlacement.Policy.BALANCED) {
            return BalancedPlacement.place(ExpertLoad.uniform(shape.sparseLayers(), shape.numExperts()), names, redundantExperts, epoch);
        }
        return ExpertPlacement.createSharded(shape.sparseLayers(), shape.numExperts(), shards, names, policy, epoch);
    }

    /**
     * The placement over a changed set of live remote workers (membership placing a dead or
     * draining worker out, or a joined one in): the balanced policy packs by {@code window} (a
     * window without tokens counts as uniform), the others place as at start.
     */
    public Membership.Placer placer() {
        return (names, hosts, window, epoch) -> {
            boolean[] sparse = window.sparseLayers();
            int experts = window.numExperts();
            if (policy == ExpertPlacement.Policy.BALANCED) {
                boolean any = false;
                for (int l = 0; l < sparse.length; l++) {
                    any |= sparse[l] && window.total(l) > 0;
                }
                ExpertLoad load = any ? window : ExpertLoad.uniform(sparse, experts);
                return BalancedPlacement.place(load, names, hosts, redundantExperts, epoch);
            }
            return ExpertPlacement.createSharded(sparse, experts, shards, names, policy, epoch);
        };
    }

    /**
     * Whether the routed experts run in this process. When not (remote workers), the frontend
     * neither resolves nor validates the experts' tensors: the workers do, for their share.
     */
    public boolean local() {
        return workers instanceof InProcess;
    }

    /**
     * The dispatcher of this topology over a model's routed experts, started (remote workers:
     * every worker checked and assigned); {@code log} hears what remote start-up waits for.
     * {@code resume}, with remote workers, is a frontend's saved state: its frontend id, its
     * placement epoch and replicas (workers that still hold their experts for that id and epoch
     * map nothing), its load window. A saved placement that no longer fits the model, or whose
     * workers cannot all be assigned, gives way to a fresh placement over the workers at the next
     * epoch, under the same id. Null: a fresh start.
     *
     * @param dir      the frontend's model: remote workers must serve the same ({@link ModelFingerprint})
     * @param shape    its expert layers
     * @param experts  the frontend's routed experts, which in-process workers compute with
     * @param failover opens the frontend's own dispatcher over every expert, as the workers hold
     *                 them, when remote workers fail ({@link Failover})
     */
    public ExpertDispatcher dispatcher(Path dir, MoeShape shape, ExpertStore experts, Supplier<ExpertDispatcher> failover,
                                       PrintStream log, FrontendState.Snapshot resume) {
        return switch (workers) {
            case Remote r -> remoteDispatcher(r, dir, shape, failover, log, resume);
            case InProcess p -> {
                if (resume != null) {
                    throw new IllegalArgumentException("--state-dir keeps the placement of remote --workers; in-process workers have none to resume");
                }
                yield inProcess(p, shape, experts);
            }
        };
    }

    private ExpertDispatcher remoteDispatcher(Remote r, Path dir, MoeShape shape, Supplier<ExpertDispatcher> failover,
                                              PrintStream log, FrontendState.Snapshot resume) {
        // said before the wait, so a slow or silent worker is never a silent hang
        log.printf("epserve: connecting to %d expert worker(s) %s (%s): each must answer within %d ms "
                + "and load its experts within %d s%n", r.count(), String.join(",", r.addresses()),
                remote.security().describe(), remote.deadline().toMillis(), remote.assignDeadline().toSeconds());
        log.flush();
        RoutedTokens routed = new RoutedTokens(shape.sparseLayers(), shape.numExperts(), loadWindow);
        if (resume == null) {
            GrpcExpertDispatcher d = started(dir, failover, initialPlacement(shape, r.addresses(), 1), routed, null, log);
            log.println("epserve: expert workers assigned (placement epoch " + d.placement().epoch() + ")");
            return d;
        }
        routed.seed(resume.load().forModel(shape.sparseLayers(), shape.numExperts()));
        try {
            GrpcExpertDispatcher d = started(dir, failover, resume.placement(shape.sparseLayers(), shape.numExperts()), routed,
                    resume.frontendId(), log);
            log.println("epserve: resumed placement epoch " + d.placement().epoch() + " over " + d.placement().workerCount()
                    + " worker(s) as frontend " + resume.frontendId());
            return d;
        } catch (RuntimeException e) {
            log.println("epserve: the saved placement epoch " + resume.epoch() + " cannot be resumed (" + e.getMessage()
                    + "): placing the experts over " + String.join(",", r.addresses()) + " at epoch " + (resume.epoch() + 1));
        }
        GrpcExpertDispatcher d = started(dir, failover, initialPlacement(shape, r.addresses(), resume.epoch() + 1), routed,
                resume.frontendId(), log);
        log.println("epserve: expert workers assigned (placement epoch " + d.placement().epoch() + ")");
        return d;
    }

    /**
     * A remote dispatcher over {@code p}, started (every worker checked and assigned), that computes
     * a step its workers fail itself ({@link Failover}); closed again when starting fails.
     */
    private GrpcExpertDispatcher started(Path dir, Supplier<ExpertDispatcher> failover, ExpertPlacement p, RoutedTokens routed,
                                         String frontendId, PrintStream log) {
        GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, p, remote, GrpcExpertDispatcher.TCP, routed, frontendId)
                .withFailover(failover, GrpcExpertDispatcher.FAILOVER_PROBE_INTERVAL, event -> {
                    log.println("epserve: " + event);
                    log.flush();
                });
        try {
            return d.start();
        } catch (RuntimeException e) {
            d.close();
            throw e;
        }
    }

    private ExpertDispatcher inProcess(InProcess p, MoeShape shape, ExpertStore experts) {
        int n = p.n();
        List<String> names = IntStream.range(0, n).mapToObj(i -> "inproc-" + i).toList();
        if (shards == 1) {
            RoutedTokens routed = new RoutedTokens(shape.sparseLayers(), shape.numExperts(), loadWindow);
            return new InProcessDispatcher(initialPlacement(shape, names, 0),
                    names.stream().map(nm -> new ExpertWorker(nm, experts, shape.numExperts())).toList(), routed);
        }
        if (shards > shape.expertIntermediate()) {
            throw new IllegalArgumentException("--expert-shards " + shards + " exceeds the experts' intermediate size "
                    + shape.expertIntermediate());
        }
        ExpertStore store = ExpertShards.store(experts, shape.layers(), shape.numExperts(), shards);
        // cut the first expert now: a shard count that splits quantized blocks fails here, before serving
        int first = IntStream.range(0, shape.layers()).filter(shape::isSparse).findFirst().orElseThrow();
        for (int s = 0; s < shards; s++) {
            store.expert(first, s);
        }
        return ExpertShards.dispatcher(new InProcessDispatcher(initialPlacement(shape, names, 0),
                names.stream().map(nm -> new ExpertWorker(nm, store, shape.numExperts() * shards)).toList()), shards);
    }
}
