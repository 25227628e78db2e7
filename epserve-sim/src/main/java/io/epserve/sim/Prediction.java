package io.epserve.sim;

import io.epserve.moe.ExpertPlacement;

/**
 * One configuration with expert parallelism, set against what it is measured by: the same
 * cluster with one worker (EP efficiency), and data parallelism — replicas that each hold the
 * whole model and run it in one process, no network — at equal total memory and at equal worker
 * count. DP replicas share nothing, so their throughput is replicas × one replica's.
 *
 * @param ep                  the configuration itself
 * @param oneWorker           one worker, one host, frontends scaled down by the worker count (at least one)
 * @param replica             one data-parallel replica (one process, the batch of one frontend, the frontend's threads)
 * @param epEfficiency        ep throughput / (W × oneWorker throughput)
 * @param epBytes             memory EP maps in total: every worker's experts (replicas counted) + every frontend's non-expert weights
 * @param maxWorkerBytes      the largest worker's experts
 * @param fullModelBytes      one full replica
 * @param dpReplicasEqualMemory replicas that fit in {@code epBytes}
 * @param dpEqualMemoryTokensPerSecond their throughput
 * @param dpEqualWorkersTokensPerSecond W replicas' throughput (each worker holding the full model, memory permitting)
 * @param fullReplicaFits     whether a full replica fits the memory per worker given (always, when none is given)
 */
public record Prediction(SimResult ep, SimResult oneWorker, SimResult replica, double epEfficiency, long epBytes, long maxWorkerBytes,
                         long fullModelBytes, int dpReplicasEqualMemory, double dpEqualMemoryTokensPerSecond,
                         double dpEqualWorkersTokensPerSecond, boolean fullReplicaFits) {

    /**
     * @param memoryPerWorker bytes a worker may hold, 0 for no limit: a DP replica that does not
     *                        fit gets no equal-worker-count figure (NaN)
     */
    public static Prediction of(Scenario s, PlacementChoice placement, long memoryPerWorker) {
        Cluster c = s.cluster();
        int w = c.workers();
        if (w < 1) {
            throw new IllegalArgumentException("a prediction for expert parallelism needs at least one worker");
        }
        ModelShape m = s.model();
        ExpertPlacement p = placement.place(m, w, s.popularity());
        SimResult ep = Simulator.run(s.with(c, p));
        int baseFrontends = Math.max(1, c.frontends() / w);
        SimResult one = Simulator.run(s.with(c.withWorkers(1, 1, baseFrontends), placement.place(m, 1, s.popularity())));
        SimResult replica = Simulator.run(s.with(c.withWorkers(0, 1, 1), null));
        long maxWorker = 0;
        long experts = 0;
        for (int i = 0; i < w; i++) {
            long b = p.expertCountOn(i) * m.expertBytes();
            maxWorker = Math.max(maxWorker, b);
            experts += b;
        }
        long epBytes = experts + (long) c.frontends() * m.nonExpertBytes();
        long full = m.fullModelBytes();
        int replicas = (int) Math.max(1, epBytes / full);
        boolean fits = memoryPerWorker <= 0 || full <= memoryPerWorker;
        double dpWorkers = fits ? w * replica.tokensPerSecond() : Double.NaN;
        return new Prediction(ep, one, replica, ep.tokensPerSecond() / (w * one.tokensPerSecond()), epBytes, maxWorker, full, replicas,
                replicas * replica.tokensPerSecond(), dpWorkers, fits);
    }
}
