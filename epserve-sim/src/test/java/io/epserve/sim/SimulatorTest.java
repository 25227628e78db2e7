package io.epserve.sim;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.model.plan.WeightFormat;
import io.epserve.moe.ExpertCost;
import io.epserve.moe.ExpertPlacement;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The simulator on cases whose answer is known in closed form. */
class SimulatorTest {
    static final int HIDDEN = 256;
    static final long PER_EXPERT = 3L * HIDDEN * 512;

    /** 4 layers (layer 0 dense), E experts top-k, BF16. */
    static ModelShape model(int experts, int k) {
        boolean[] sparse = {false, true, true, true};
        long[] frontend = {1_000_000, 500_000, 500_000, 500_000};
        return new ModelShape("test", sparse, frontend, 2_000_000, HIDDEN, experts, k, PER_EXPERT, WeightFormat.BF16, WeightFormat.BF16,
                10_000_000);
    }

    static CostModel cost(double layerSeconds, double tokenSeconds) {
        KernelCost k = new KernelCost(20e-6, 10e9, 40e9);
        return new CostModel(Map.of(WeightFormat.BF16, k), k, layerSeconds, tokenSeconds, "test");
    }

    /** Compute that takes no time: only the network counts. */
    static CostModel free() {
        KernelCost k = new KernelCost(0, 1e30, 1e30);
        return new CostModel(Map.of(WeightFormat.BF16, k), k, 0, 0, "free");
    }

    static Scenario scenario(ModelShape m, CostModel cost, Network net, Cluster c, PlacementChoice p, Scenario.Routing routing) {
        ExpertPopularity pop = ExpertPopularity.uniform(m.layers(), m.experts());
        return new Scenario(m, cost, net, c, pop, c.workers() == 0 ? null : p.place(m, c.workers(), pop), routing, 5, 1,
                Scenario.Workload.DECODE);
    }

    static final PlacementChoice CONTIGUOUS = new PlacementChoice(PlacementChoice.Policy.CONTIGUOUS, 0);

    /** Per-message software cost of {@link #oneWorker}. */
    static final double ONE_WORKER_MESSAGE = 0.2e-3;

    /** One worker with a frontend of 2 threads on cores of their own, batch 16, expected routing over 8 experts top-2. */
    static Scenario oneWorker() {
        Network net = new Network(0, Double.POSITIVE_INFINITY, ONE_WORKER_MESSAGE, 0, 0, 4);
        Cluster c = new Cluster(1, 1, 1, 16, false, 2, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        return scenario(model(8, 2), cost(0.3e-3, 0.01e-3), net, c, CONTIGUOUS, Scenario.Routing.EXPECTED);
    }

    @Test
    void oneWorkerStepIsTheSumOfItsParts() {
        Scenario s = oneWorker();
        ModelShape m = s.model();
        CostModel cost = s.cost();
        double msg = ONE_WORKER_MESSAGE;
        int batch = s.cluster().batch();
        SimResult r = Simulator.run(s);

        double step = 0;
        for (int l = 0; l < m.layers(); l++) {
            step += cost.frontendProductSeconds(m, l, batch) / 2 + cost.frontendLayerSeconds() + cost.frontendTokenSeconds() * batch;
            if (m.isSparse(l)) {
                // every expert gets batch·k/E tokens, all on the one worker (1 thread); two messages, each paying its
                // software cost at both ends
                step += 8 * cost.expertSeconds(m, batch * 2 / 8.0) + 4 * msg;
            }
        }
        step += cost.headSeconds(m, batch) / 2;
        assertThat(r.stepP50()).isCloseTo(step, within(1e-12));
        assertThat(r.stepP99()).isCloseTo(step, within(1e-12));
        assertThat(r.tokensPerSecond()).isCloseTo(batch / step, within(1e-6));
        assertThat(r.imbalance()).isCloseTo(1.0, within(1e-12));
    }

    @Test
    void expertLayersAloneAreTheDispatchesAndNothingElse() {
        Scenario decode = oneWorker();
        ModelShape m = decode.model();
        CostModel cost = decode.cost();
        int batch = decode.cluster().batch();
        Scenario layers = new Scenario(m, cost, decode.network(), decode.cluster(), decode.popularity(), decode.placement(),
                decode.routing(), decode.steps(), decode.seed(), Scenario.Workload.EXPERT_LAYERS);
        SimResult r = Simulator.run(layers);
        // no frontend products, no per-layer or per-token work, no output head, the dense layer free
        double step = m.sparseLayerCount() * (8 * cost.expertSeconds(m, batch * 2 / 8.0) + 4 * ONE_WORKER_MESSAGE);
        assertThat(r.stepMean()).isCloseTo(step, within(1e-12));
        assertThat(r.tokensPerSecond()).isCloseTo(batch / step, within(1e-6));
        assertThat(Simulator.run(decode).stepMean()).isGreaterThan(step + cost.headSeconds(m, batch) / 2);
    }

    @Test
    void singleProcessRunsExpertsOnItsOwnThreads() {
        ModelShape m = model(8, 2);
        CostModel cost = cost(0, 0);
        Cluster c = new Cluster(0, 1, 1, 8, false, 2, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        SimResult r = Simulator.run(scenario(m, cost, Network.ideal(), c, CONTIGUOUS, Scenario.Routing.EXPECTED));
        double step = cost.headSeconds(m, 8) / 2;
        for (int l = 0; l < m.layers(); l++) {
            step += cost.frontendProductSeconds(m, l, 8) / 2 + (m.isSparse(l) ? 8 * cost.expertSeconds(m, 2) / 2 : 0);
        }
        assertThat(r.stepMean()).isCloseTo(step, within(1e-12));
        assertThat(r.wireBytesPerToken()).isZero();
    }

    @Test
    void perfectBalanceWithZeroLatencyScalesExactly() {
        ModelShape m = model(16, 2);
        // compute-bound experts (no per-call or weight-read cost: an expert's time is proportional to its tokens) and
        // frontends that take no time, so the workers are the only resource and never wait
        KernelCost flops = new KernelCost(0, 1e30, 40e9);
        KernelCost none = new KernelCost(0, 1e30, 1e30);
        CostModel cost = new CostModel(Map.of(WeightFormat.BF16, flops), none, 0, 0, "experts only");
        for (int w : new int[] {2, 4, 8}) {
            Cluster c = new Cluster(w, w, w, 8, false, 1, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
            Prediction p = Prediction.of(scenario(m, cost, Network.ideal(), c, CONTIGUOUS, Scenario.Routing.EXPECTED), CONTIGUOUS, 0);
            // W frontends on W workers each holding E/W equally loaded experts: every worker does in a layer what the one
            // worker did for one frontend, so each frontend's step is unchanged and throughput is W times one worker's
            assertThat(p.epEfficiency()).as("W=%d", w).isCloseTo(1.0, within(1e-9));
            assertThat(p.ep().imbalance()).isCloseTo(1.0, within(1e-12));
            assertThat(p.maxWorkerBytes()).isEqualTo(m.allExpertBytes() / w);
            for (double u : p.ep().workerUtilisation()) {
                assertThat(u).isCloseTo(p.ep().workerUtilisation()[0], within(1e-12));
            }
        }
    }

    @Test
    void perfectBalanceDividesOneFrontendsExpertTimeByTheWorkers() {
        ModelShape m = model(16, 2);
        CostModel cost = cost(0.1e-3, 0.02e-3);
        int batch = 8;
        double frontend = cost.headSeconds(m, batch);
        double experts = 0;
        for (int l = 0; l < m.layers(); l++) {
            frontend += cost.frontendProductSeconds(m, l, batch) + 0.1e-3 + 0.02e-3 * batch;
            experts += m.isSparse(l) ? 16 * cost.expertSeconds(m, batch * 2 / 16.0) : 0;
        }
        for (int w : new int[] {1, 2, 4, 8}) {
            Cluster c = new Cluster(w, w, 1, batch, false, 1, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
            SimResult r = Simulator.run(scenario(m, cost, Network.ideal(), c, CONTIGUOUS, Scenario.Routing.EXPECTED));
            assertThat(r.stepMean()).as("W=%d", w).isCloseTo(frontend + experts / w, within(1e-12));
        }
    }

    @Test
    void weightReadsSharedByMoreTokensMakeEfficiencyExceedOne() {
        // with a per-call and weight-read cost, W frontends on W workers give each expert W times the tokens for the same
        // weight bytes: each frontend's step gets shorter than with one worker, so efficiency is above 1 without a network
        ModelShape m = model(16, 2);
        Cluster c = new Cluster(4, 4, 4, 8, false, 1, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        Prediction p = Prediction.of(scenario(m, cost(0.1e-3, 0.02e-3), Network.ideal(), c, CONTIGUOUS, Scenario.Routing.EXPECTED), CONTIGUOUS, 0);
        assertThat(p.epEfficiency()).isGreaterThan(1.0);
    }

    @Test
    void bandwidthBoundLayerIsTheFrontendLinkSerialisingEveryMessage() {
        // top-1 so that the tokens a worker gets are exactly batch / W; compute free, no latency
        ModelShape m = model(8, 1);
        double bitsPerSecond = 1e9;
        Network net = new Network(0, bitsPerSecond, 0, 0, 0, 4);
        int w = 4;
        int batch = 32;
        Cluster c = new Cluster(w, w + 1, 1, batch, false, 1, 1, new Cpu.Dedicated(), HostLayout.FRONTEND_HOST);
        SimResult r = Simulator.run(scenario(m, free(), net, c, CONTIGUOUS, Scenario.Routing.EXPECTED));
        double n = (double) batch / w;
        double request = (64 + n * (HIDDEN * 4 + 8)) * 8 / bitsPerSecond;
        double answer = (64 + n * HIDDEN * 4) * 8 / bitsPerSecond;
        // the frontend's link sends W requests back to back; each answer leaves as soon as its request is in, and the
        // frontend's incoming link takes them one after another: the last ends one answer after the last request
        double layer = w * request + answer;
        assertThat(r.stepMean()).isCloseTo(3 * layer, within(1e-12));
        assertThat(r.wireBytesPerToken()).isCloseTo(3 * w * (128 + n * (2 * HIDDEN * 4 + 8)) / batch, within(1e-9));
    }

    @Test
    void latencyAddsTwoFlightsPerSparseLayer() {
        ModelShape m = model(8, 2);
        double latency = 500e-6;
        Cluster c = new Cluster(2, 3, 1, 8, false, 1, 1, new Cpu.Dedicated(), HostLayout.FRONTEND_HOST);
        SimResult none = Simulator.run(scenario(m, free(), Network.ideal(), c, CONTIGUOUS, Scenario.Routing.EXPECTED));
        SimResult slow = Simulator.run(scenario(m, free(), new Network(latency, Double.POSITIVE_INFINITY, 0, 0, 0, 4), c, CONTIGUOUS,
                Scenario.Routing.EXPECTED));
        assertThat(none.stepMean()).isCloseTo(0, within(1e-15));
        assertThat(slow.stepMean()).isCloseTo(3 * 2 * latency, within(1e-12));
    }

    @Test
    void overlapHidesTheNetworkBehindTheOtherMicroBatch() {
        ModelShape m = model(8, 2);
        // the frontend's work grows with its tokens, so halving the batch halves it: the flights are then hidden
        CostModel cost = cost(0, 0.1e-3);
        Network net = new Network(1e-3, Double.POSITIVE_INFINITY, 0, 0, 0, 4);
        Cluster c = new Cluster(2, 3, 1, 16, false, 1, 1, new Cpu.Dedicated(), HostLayout.FRONTEND_HOST);
        SimResult off = Simulator.run(scenario(m, cost, net, c, CONTIGUOUS, Scenario.Routing.EXPECTED));
        SimResult on = Simulator.run(scenario(m, cost, net, c.withOverlap(true), CONTIGUOUS, Scenario.Routing.EXPECTED));
        assertThat(on.tokensPerSecond()).isGreaterThan(off.tokensPerSecond() * 1.1);
    }

    @Test
    void sharedCoresAreSharedFairlyByTheRunnableThreads() {
        // single-process frontends of one thread each, identical expected work: alone a step takes S; n of them on C
        // cores share them as a fair scheduler does, each thread at C/n of a core, so every step takes S·n/C
        ModelShape m = model(8, 2);
        CostModel cost = cost(0.2e-3, 0.01e-3);
        Cluster alone = new Cluster(0, 1, 1, 8, false, 1, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        double step = Simulator.run(scenario(m, cost, Network.ideal(), alone, CONTIGUOUS, Scenario.Routing.EXPECTED)).stepMean();
        for (int[] nc : new int[][] {{2, 1}, {3, 2}, {4, 2}}) {
            Cluster shared = new Cluster(0, 1, nc[0], 8, false, 1, 1, new Cpu.OneMachine(nc[1]), HostLayout.COLOCATED);
            SimResult r = Simulator.run(scenario(m, cost, Network.ideal(), shared, CONTIGUOUS, Scenario.Routing.EXPECTED));
            assertThat(r.stepP50()).as("%d threads on %d cores", nc[0], nc[1]).isCloseTo(step * nc[0] / nc[1], within(1e-9 * step));
            assertThat(r.stepP99()).isCloseTo(r.stepP50(), within(1e-9 * step));
        }
        // fewer runnable threads than cores: each runs at full speed
        Cluster spare = new Cluster(0, 1, 2, 8, false, 1, 1, new Cpu.OneMachine(4), HostLayout.COLOCATED);
        assertThat(Simulator.run(scenario(m, cost, Network.ideal(), spare, CONTIGUOUS, Scenario.Routing.EXPECTED)).stepMean())
                .isCloseTo(step, within(1e-9 * step));
    }

    @Test
    void messagesTakeCoresFromTheKernels() {
        // the same two workers, with the messages' software cost on cores of their own (dedicated) and on the machine's
        // two cores, which the frontend's and workers' kernels also use: sharing can only be slower
        ModelShape m = model(8, 2);
        CostModel cost = cost(0.1e-3, 0.01e-3);
        Network net = new Network(0, Double.POSITIVE_INFINITY, 0.3e-3, 0, 0, 4);
        Cluster own = new Cluster(2, 1, 1, 16, true, 2, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        Cluster shared = new Cluster(2, 1, 1, 16, true, 2, 1, new Cpu.OneMachine(2), HostLayout.COLOCATED);
        SimResult a = Simulator.run(scenario(m, cost, net, own, CONTIGUOUS, Scenario.Routing.EXPECTED));
        SimResult b = Simulator.run(scenario(m, cost, net, shared, CONTIGUOUS, Scenario.Routing.EXPECTED));
        assertThat(b.tokensPerSecond()).isLessThan(a.tokensPerSecond() * 0.95);
    }

    @Test
    void handoffIsWallTimePerMessage() {
        // free compute, one worker: each sparse layer is two messages, each delayed by the hand-off
        ModelShape m = model(8, 2);
        Cluster c = new Cluster(1, 1, 1, 4, false, 1, 1, new Cpu.OneMachine(2), HostLayout.COLOCATED);
        SimResult r = Simulator.run(scenario(m, free(), new Network(0, Double.POSITIVE_INFINITY, 0, 0, 250e-6, 4), c, CONTIGUOUS,
                Scenario.Routing.EXPECTED));
        assertThat(r.stepMean()).isCloseTo(3 * 2 * 250e-6, within(1e-12));
    }

    @Test
    void skewedLoadIsImbalancedAndReplicasEvenItOut() {
        ModelShape m = model(16, 2);
        CostModel cost = cost(0.1e-3, 0);
        ExpertPopularity zipf = ExpertPopularity.zipf(m.layers(), m.experts(), 1.2, 3);
        Cluster c = new Cluster(4, 4, 4, 32, false, 1, 1, new Cpu.Dedicated(), HostLayout.COLOCATED);
        PlacementChoice replicated = new PlacementChoice(PlacementChoice.Policy.REPLICATED, 0);
        SimResult contiguous = Simulator.run(new Scenario(m, cost, Network.ideal(), c, zipf, CONTIGUOUS.place(m, 4, zipf),
                Scenario.Routing.SAMPLED, 20, 5, Scenario.Workload.DECODE));
        // replicas split a hot expert's pairs by the placement's cost model, as the dispatcher does:
        // with the kernel's fixed part known, an expert runs on a second replica only when that pays
        double one = cost.expertSeconds(m, 1);
        double two = cost.expertSeconds(m, 2);
        ExpertPlacement costed = replicated.place(m, 4, zipf).withCost(ExpertCost.of(2 * one - two, two - one));
        SimResult spread = Simulator.run(new Scenario(m, cost, Network.ideal(), c, zipf, costed, Scenario.Routing.SAMPLED, 20, 5,
                Scenario.Workload.DECODE));
        // without it every replica takes a share of every expert and reads its weights: slower than no replicas here
        SimResult pairsOnly = Simulator.run(new Scenario(m, cost, Network.ideal(), c, zipf, replicated.place(m, 4, zipf),
                Scenario.Routing.SAMPLED, 20, 5, Scenario.Workload.DECODE));
        assertThat(contiguous.imbalance()).isGreaterThan(1.3);
        assertThat(spread.imbalance()).isLessThan(contiguous.imbalance());
        assertThat(spread.tokensPerSecond()).isGreaterThan(contiguous.tokensPerSecond());
        assertThat(pairsOnly.tokensPerSecond()).isLessThan(spread.tokensPerSecond());
        assertThat(contiguous.stepP50()).isLessThanOrEqualTo(contiguous.stepP90());
        assertThat(contiguous.stepP90()).isLessThanOrEqualTo(contiguous.stepP99());
    }

    @Test
    void sampledRoutingMatchesTheSharesOnAverage() {
        double[] share = {0.5, 0.25, 0.125, 0.125};
        double[] cum = {0.5, 0.75, 0.875, 1.0};
        int[] out = new int[2];
        int[] seen = new int[4];
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < 100_000; i++) {
            Simulator.pickDistinct(share, cum, 2, r, out, 0);
            assertThat(out[0]).isNotEqualTo(out[1]);
            seen[out[0]]++;
        }
        // the first pick follows the shares exactly
        assertThat(seen[0] / 100_000.0).isCloseTo(0.5, within(0.01));
        assertThat(seen[3] / 100_000.0).isCloseTo(0.125, within(0.01));
    }

    @Test
    void loadFileErrorsNameTheLayer() throws Exception {
        ObjectMapper json = new ObjectMapper();
        boolean[] sparse = {false, true};
        assertThatThrownBy(() -> ExpertPopularity.fromLoad(json.readTree("{\"layers\":[{\"layer\":1,\"tokens\":[1,2,3]}]}"), sparse, 4, "f.json"))
                .hasMessageContaining("layer 1 has 3 token counts, the model has 4 experts");
        assertThatThrownBy(() -> ExpertPopularity.fromLoad(json.readTree("{\"layers\":[{\"layer\":0,\"tokens\":[1,2,3,4]}]}"), sparse, 4, "f.json"))
                .hasMessageContaining("layer 0 is not a sparse layer");
        ExpertPopularity p = ExpertPopularity.fromLoad(json.readTree("{\"layers\":[{\"layer\":1,\"tokens\":[3,1,0,0]}]}"), sparse, 4, "f.json");
        assertThat(p.share(1, 0)).isEqualTo(0.75);
        assertThat(p.skew(1)).isEqualTo(3.0);
    }

    @Test
    void costModelRoundTripsThroughJson(@TempDir Path dir) {
        CostModel c = CostModel.thisMachine();
        Path f = dir.resolve("cost.json");
        c.write(f);
        CostModel back = CostModel.read(f);
        assertThat(back.experts()).isEqualTo(c.experts());
        assertThat(back.frontendLayerSeconds()).isEqualTo(c.frontendLayerSeconds());
    }
}
