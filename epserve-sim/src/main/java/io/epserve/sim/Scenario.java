package io.epserve.sim;

import io.epserve.moe.ExpertPlacement;

/**
 * One simulated configuration: a validated value, built once.
 *
 * @param model      the model's shapes
 * @param cost       compute time on this machine
 * @param network    the network between hosts
 * @param cluster    processes, hosts, batch, overlap
 * @param popularity the routed load per expert
 * @param placement  which worker holds which experts (ignored with 0 workers)
 * @param routing    tokens drawn per step, or every step the expected counts
 * @param steps      decode steps per frontend
 * @param seed       seed of the routing draws
 * @param workload   what a step runs: the whole model, or the routed experts alone
 */
public record Scenario(ModelShape model, CostModel cost, Network network, Cluster cluster, ExpertPopularity popularity,
                       ExpertPlacement placement, Routing routing, int steps, long seed, Workload workload) {

    /** How the routed experts of each token are chosen. */
    public enum Routing {
        /** Each token draws its top-k distinct experts from the popularity, every step: steps vary. */
        SAMPLED,
        /** Every step gets the expected (fractional) count per expert: all steps are equal. */
        EXPECTED
    }

    /** What one step of a frontend runs. */
    public enum Workload {
        /** A decode step of the whole model: per layer the frontend's products and other work, the experts, then the output head. */
        DECODE,
        /**
         * The routed experts of each sparse layer alone, dispatched by a frontend that does nothing
         * else: no products of its own, no other work, no output head ({@code epserve bench balance}).
         */
        EXPERT_LAYERS
    }

    public Scenario {
        if (workload == null) {
            throw new IllegalArgumentException("a scenario needs a workload");
        }
        if (steps < 1) {
            throw new IllegalArgumentException("steps must be >= 1, got " + steps);
        }
        if (popularity.experts() != model.experts()) {
            throw new IllegalArgumentException("the load has " + popularity.experts() + " experts per layer, the model " + model.experts());
        }
        if (cluster.workers() > 0) {
            if (placement == null || placement.workerCount() != cluster.workers()) {
                throw new IllegalArgumentException("a placement over exactly " + cluster.workers() + " workers is needed, got "
                        + (placement == null ? "none" : placement.workerCount()));
            }
            if (placement.numExperts() != model.experts() || placement.layers() != model.layers()) {
                throw new IllegalArgumentException("the placement is for " + placement.numExperts() + " experts over " + placement.layers()
                        + " layers, the model has " + model.experts() + " over " + model.layers());
            }
        }
    }

    public Scenario with(Cluster c, ExpertPlacement p) {
        return new Scenario(model, cost, network, c, popularity, p, routing, steps, seed, workload);
    }
}
