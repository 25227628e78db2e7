package io.epserve.rpc;

import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.moe.BalancedPlacement;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertShards;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWorker;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.RoutedTokens;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.stream.IntStream;
import io.epserve.model.ModelWeights;

/**
 * Where the routed experts run, as one validated value built once from the options (DESIGN.md
 * §3.11) and turned into a dispatcher in one place, {@link #dispatchers}: in-process workers or
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
    public ExpertPlacement initialPlacement(ModelConfig cfg, List<String> names, long epoch) {
        if (policy == ExpertPlacement.Policy.BALANCED) {
            return BalancedPlacement.place(ExpertLoad.uniform(cfg.sparseLayers(), cfg.numExperts()), names, redundantExperts, epoch);
        }
        return ExpertPlacement.createSharded(cfg.sparseLayers(), cfg.numExperts(), shards, names, policy, epoch);
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

    /** The dispatcher factory for {@link LoadedModel.Options#withDispatchers}; {@code log} hears what remote start-up waits for. */
    public LoadedModel.Dispatchers dispatchers(PrintStream log) {
        return dispatchers(log, null);
    }

    /**
     * As {@link #dispatchers(PrintStream)}, resuming a frontend's saved state (remote workers): its
     * frontend id, its placement epoch and replicas (workers that still hold their experts for that
     * id and epoch map nothing), its load window. A saved placement that no longer fits the model,
     * or whose workers cannot all be assigned, gives way to a fresh placement over the workers at
     * the next epoch, under the same id. Null: a fresh start.
     */
    public LoadedModel.Dispatchers dispatchers(PrintStream log, FrontendState.Snapshot resume) {
        return switch (workers) {
            case Remote r -> new LoadedModel.Dispatchers() {
                @Override
                public ExpertDispatcher create(Path dir, ModelConfig cfg, ModelWeights w) {
                    // said before the wait, so a slow or silent worker is never a silent hang
                    log.printf("epserve: connecting to %d expert worker(s) %s (%s): each must answer within %d ms "
                            + "and load its experts within %d s%n", r.count(), String.join(",", r.addresses()),
                            remote.security().describe(), remote.deadline().toMillis(), remote.assignDeadline().toSeconds());
                    log.flush();
                    RoutedTokens routed = new RoutedTokens(cfg.sparseLayers(), cfg.numExperts(), loadWindow);
                    if (resume == null) {
                        GrpcExpertDispatcher d = started(dir, cfg, w, initialPlacement(cfg, r.addresses(), 1), routed, null, log);
                        log.println("epserve: expert workers assigned (placement epoch " + d.placement().epoch() + ")");
                        return d;
                    }
                    routed.seed(resume.load().forModel(cfg.sparseLayers(), cfg.numExperts()));
                    try {
                        GrpcExpertDispatcher d = started(dir, cfg, w, resume.placement(cfg.sparseLayers(), cfg.numExperts()), routed,
                                resume.frontendId(), log);
                        log.println("epserve: resumed placement epoch " + d.placement().epoch() + " over " + d.placement().workerCount()
                                + " worker(s) as frontend " + resume.frontendId());
                        return d;
                    } catch (RuntimeException e) {
                        log.println("epserve: the saved placement epoch " + resume.epoch() + " cannot be resumed (" + e.getMessage()
                                + "): placing the experts over " + String.join(",", r.addresses()) + " at epoch " + (resume.epoch() + 1));
                    }
                    GrpcExpertDispatcher d = started(dir, cfg, w, initialPlacement(cfg, r.addresses(), resume.epoch() + 1), routed, resume.frontendId(), log);
                    log.println("epserve: expert workers assigned (placement epoch " + d.placement().epoch() + ")");
                    return d;
                }

                @Override
                public boolean local() {
                    return false;
                }
            };
            case InProcess p -> {
                if (resume != null) {
                    throw new IllegalArgumentException("--state-dir keeps the placement of remote --workers; in-process workers have none to resume");
                }
                yield inProcess(p);
            }
        };
    }

    /**
     * A remote dispatcher over {@code p}, started (every worker checked and assigned), that computes
     * a step its workers fail itself ({@link Failover}); closed again when starting fails.
     */
    private GrpcExpertDispatcher started(Path dir, ModelConfig cfg, ModelWeights weights, ExpertPlacement p, RoutedTokens routed,
                                         String frontendId, PrintStream log) {
        GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, p, remote, GrpcExpertDispatcher.TCP, routed, frontendId)
                .withFailover(() -> GrpcExpertDispatcher.frontendExperts(dir, cfg, weights, remote.expertDType()),
                        GrpcExpertDispatcher.FAILOVER_PROBE_INTERVAL, event -> {
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

    private LoadedModel.Dispatchers inProcess(InProcess p) {
        return (dir, cfg, w) -> {
            int n = p.n();
            List<String> names = IntStream.range(0, n).mapToObj(i -> "inproc-" + i).toList();
            if (shards == 1) {
                RoutedTokens routed = new RoutedTokens(cfg.sparseLayers(), cfg.numExperts(), loadWindow);
                return new InProcessDispatcher(initialPlacement(cfg, names, 0),
                        names.stream().map(nm -> new ExpertWorker(nm, w, cfg.numExperts())).toList(), routed);
            }
            if (shards > cfg.moeIntermediate()) {
                throw new IllegalArgumentException("--expert-shards " + shards + " exceeds the experts' intermediate size "
                        + cfg.moeIntermediate());
            }
            ExpertStore store = ExpertShards.store(w, cfg.layers(), cfg.numExperts(), shards);
            // cut the first expert now: a shard count that splits quantized blocks fails here, before serving
            int first = IntStream.range(0, cfg.layers()).filter(cfg::isSparse).findFirst().orElseThrow();
            for (int s = 0; s < shards; s++) {
                store.expert(first, s);
            }
            return ExpertShards.dispatcher(new InProcessDispatcher(initialPlacement(cfg, names, 0),
                    names.stream().map(nm -> new ExpertWorker(nm, store, cfg.numExperts() * shards)).toList()), shards);
        };
    }
}
