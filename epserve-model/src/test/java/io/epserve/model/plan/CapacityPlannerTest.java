package io.epserve.model.plan;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.model.Fixtures;
import io.epserve.model.ModelConfig;
import io.epserve.moe.ExpertPlacement;
import java.util.List;
import org.junit.jupiter.api.Test;

class CapacityPlannerTest {
    static final long GIB = 1L << 30;
    static final long MIB = 1L << 20;

    static PlanModel mixtral() {
        return ParameterCountTest.real("mixtral-8x7b");
    }

    @Test
    void mixtralOnFourWorkersHoldsTwoExpertsPerLayerEach() {
        CapacityPlan plan = CapacityPlanner.plan(mixtral(), PlanOptions.defaults(4, 24 * GIB));
        long expert = 3L * 4096 * 14336 * 2;
        assertThat(plan.expertBytes()).isEqualTo(expert).isEqualTo(336 * MIB);
        assertThat(plan.workers()).hasSize(4);
        for (CapacityPlan.WorkerPlan w : plan.workers()) {
            assertThat(w.experts()).isEqualTo(64);
            assertThat(w.shards()).isEqualTo(64);
            assertThat(w.expertBytes()).isEqualTo(64 * expert);
            assertThat(w.bytes()).isEqualTo(64 * expert + PlanOptions.DEFAULT_OVERHEAD);
            assertThat(w.fits()).isTrue();
            assertThat(w.holdings()).hasSize(32);
            assertThat(w.holdings().get(0).experts()).containsExactly(2 * w.index(), 2 * w.index() + 1);
        }
        assertThat(plan.fits()).isTrue();
        // 3 workers hold ceil(8/3) = 3 experts per layer: 31.5 GiB > 24 GiB
        assertThat(plan.minWorkers()).isEqualTo(4);
    }

    @Test
    void frontendHoldsEverythingButTheRoutedExpertsPlusKv() {
        PlanModel m = mixtral();
        PlanOptions o = PlanOptions.defaults(2, 80_000_000_000L).withKvTokens(1000);
        CapacityPlan plan = CapacityPlanner.plan(m, o);
        ParameterCount p = m.params();
        assertThat(plan.kvBytesPerToken()).isEqualTo(32L * 8 * (128 + 128) * 4);
        var f = plan.frontend().components();
        assertThat(f.get("embedding")).isEqualTo(32000L * 4096 * 2);
        assertThat(f.get("lm_head")).isEqualTo(32000L * 4096 * 2);
        assertThat(f.get("kv_cache")).isEqualTo(1000 * plan.kvBytesPerToken());
        assertThat(f.get("overhead")).isEqualTo(PlanOptions.DEFAULT_OVERHEAD);
        assertThat(f).doesNotContainKey("routed_experts");
        assertThat(plan.frontend().bytes()).isEqualTo(p.nonExpert() * 2 + 1000 * plan.kvBytesPerToken() + PlanOptions.DEFAULT_OVERHEAD);
        assertThat(plan.frontend().fits()).isTrue();
    }

    @Test
    void mlaKvCacheIsTheCompressedLatent() {
        PlanModel ds = ParameterCountTest.real("deepseek-v3");
        ModelConfig c = ds.config();
        // (kv_lora_rank + qk_rope_head_dim) × layers × dtype size
        assertThat(CapacityPlanner.kvBytesPerToken(c, WeightFormat.F32)).isEqualTo((512 + 64) * 61L * 4);
        assertThat(CapacityPlanner.kvBytesPerToken(c, WeightFormat.BF16)).isEqualTo((512 + 64) * 61L * 2);
        assertThat(CapacityPlanner.mlaLatentBytesPerToken(c, WeightFormat.BF16)).isEqualTo(61L * (512 + 64) * 2);
        assertThat(CapacityPlanner.expandedBytesPerToken(c, WeightFormat.BF16)).isEqualTo(61L * 128 * (192 + 128) * 2);
        CapacityPlan plan = CapacityPlanner.plan(ds, PlanOptions.defaults(8, 200 * GIB));
        assertThat(plan.kvBytesPerToken()).isEqualTo((512 + 64) * 61L * 4);
        assertThat(plan.notes()).anyMatch(n -> n.contains("compressed cache") && n.contains("expanded per-head keys"));
        assertThat(plan.notes()).anyMatch(n -> n.contains("multi-token-prediction"));
    }

    @Test
    void quantizedExpertBytesFollowTheGgufBlocks() {
        PlanModel m = mixtral();
        long weights = 3L * 4096 * 14336;
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.F32)).expertBytes()).isEqualTo(weights * 4);
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.F16)).expertBytes()).isEqualTo(weights * 2);
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.Q8_0)).expertBytes()).isEqualTo(weights / 32 * 34);
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.Q4_0)).expertBytes()).isEqualTo(weights / 32 * 18);
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.Q4_K)).expertBytes()).isEqualTo(weights / 256 * 144);
        assertThat(WeightFormat.Q4_K.bitsPerWeight()).isEqualTo(4.5);
        assertThat(WeightFormat.Q8_0.bitsPerWeight()).isEqualTo(8.5);
    }

    @Test
    void quantizedRowsMustBeWholeBlocks() {
        PlanModel fixture = PlanModel.load(Fixtures.model("mixtral")); // hidden 128, FFN 192
        assertThatThrownBy(() -> CapacityPlanner.plan(fixture, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.Q4_K)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("multiples of 256");
        assertThat(CapacityPlanner.plan(fixture, PlanOptions.defaults(1, GIB).withExpertDtype(WeightFormat.Q8_0)).expertBytes())
                .isEqualTo(3L * 128 * 192 / 32 * 34);
        // 192 / 2 = 96 = 3 blocks of 32; 192 / 4 = 48 is not whole blocks
        CapacityPlanner.plan(fixture, PlanOptions.defaults(2, GIB).withExpertDtype(WeightFormat.Q8_0).withExpertShards(2));
        assertThatThrownBy(() -> CapacityPlanner.plan(fixture, PlanOptions.defaults(4, GIB).withExpertDtype(WeightFormat.Q8_0).withExpertShards(4)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("per shard (48)");
    }

    @Test
    void shardsSplitEachExpertOverConsecutiveWorkers() {
        PlanModel m = mixtral();
        CapacityPlan plan = CapacityPlanner.plan(m, PlanOptions.defaults(2, 80 * GIB).withExpertShards(2));
        assertThat(plan.shardBytes() * 2).isEqualTo(plan.expertBytes());
        for (CapacityPlan.WorkerPlan w : plan.workers()) {
            // every worker holds one half of every expert of every layer
            assertThat(w.experts()).isEqualTo(8 * 32);
            assertThat(w.shards()).isEqualTo(8 * 32);
            assertThat(w.expertBytes()).isEqualTo(8L * 32 * plan.expertBytes() / 2);
        }
        // expert 0 lives on worker 0: shard 0 there, shard 1 on worker 1
        CapacityPlan.LayerHolding w1 = plan.workers().get(1).holdings().get(0);
        assertThat(w1.experts()).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        assertThat(w1.shards()).containsExactly(1, 1, 1, 1, 0, 0, 0, 0);
    }

    @Test
    void allExpertBytesAreSomewhereWhateverThePolicyShardsAndWorkers() {
        PlanModel m = PlanModel.load(Fixtures.model("deepseek_v3")); // 2 sparse layers of 16 experts, FFN 64
        long all = (long) m.config().sparseLayerCount() * m.config().numExperts() * CapacityPlanner.sliceBytes(m.config(), WeightFormat.BF16, 64);
        for (ExpertPlacement.Policy policy : ExpertPlacement.Policy.values()) {
            for (int k : new int[] {1, 2, 4}) {
                for (int w = k; w <= 7; w++) {
                    CapacityPlan plan = CapacityPlanner.plan(m, PlanOptions.defaults(w, GIB).withPolicy(policy).withExpertShards(k));
                    // replicated: every worker holds every expert (or shard); balanced: each at least once, and
                    // the slots an uneven split leaves free hold extra replicas; otherwise each byte is placed once
                    int copies = policy == ExpertPlacement.Policy.REPLICATED ? w : 1;
                    long bytes = plan.workers().stream().mapToLong(CapacityPlan.WorkerPlan::expertBytes).sum();
                    int slices = plan.workers().stream().mapToInt(CapacityPlan.WorkerPlan::shards).sum();
                    if (policy == ExpertPlacement.Policy.BALANCED) {
                        assertThat(slices).as("%s k=%d w=%d", policy, k, w).isBetween(2 * 16 * k, 2 * w * ((16 + w - 1) / w) * k);
                        assertThat(bytes).isEqualTo(all / (2L * 16 * k) * slices);
                    } else {
                        assertThat(bytes).as("%s k=%d w=%d", policy, k, w).isEqualTo(all * copies);
                        assertThat(slices).isEqualTo(2 * 16 * k * copies);
                    }
                    // the fast search path (one layer × sparse layers) agrees with the full placement
                    assertThat(CapacityPlanner.maxWorkerBytes(m.config(), plan.options(), plan.shardBytes(), 2, w))
                            .as("%s k=%d w=%d", policy, k, w).isEqualTo(plan.maxWorkerBytes());
                }
            }
        }
    }

    @Test
    void minWorkersIsNullWhenOneExpertPerLayerDoesNotFit() {
        // 32 layers × 336 MiB = 10.5 GiB even with one expert per layer per worker
        CapacityPlan plan = CapacityPlanner.plan(mixtral(), PlanOptions.defaults(8, 8 * GIB));
        assertThat(plan.fits()).isFalse();
        assertThat(plan.workers()).allMatch(w -> !w.fits());
        assertThat(plan.minWorkers()).isNull();
        assertThat(plan.searchLimit()).isEqualTo(8);
        // ... while 4 shards per expert bring a worker down to 32 × 84 MiB: 16 workers hold 2 shards per layer, 32 hold 1
        CapacityPlan sharded = CapacityPlanner.plan(mixtral(), PlanOptions.defaults(8, 8 * GIB).withExpertShards(4));
        assertThat(sharded.searchLimit()).isEqualTo(32);
        assertThat(sharded.minWorkers()).isEqualTo(16);
    }

    @Test
    void aFrontendThatDoesNotFitMeansNoWorkerCountDoes() {
        // DeepSeek-V3's frontend: 14.6B non-expert parameters in bf16 are ~27 GiB
        CapacityPlan plan = CapacityPlanner.plan(ParameterCountTest.real("deepseek-v3"), PlanOptions.defaults(64, 24 * GIB));
        assertThat(plan.frontend().fits()).isFalse();
        assertThat(plan.fits()).isFalse();
        assertThat(plan.minWorkers()).isNull();
        // the workers alone: 4 experts per layer × 58 layers × 84 MiB = 19 GiB fit 24 GiB; 256 / 4 = 64 workers
        assertThat(plan.minExpertWorkers()).isEqualTo(64);
        assertThat(PlanReport.text(plan)).anyMatch(l -> l.contains("the experts alone would need 64 workers"));
        CapacityPlan roomy = CapacityPlanner.plan(ParameterCountTest.real("deepseek-v3"), PlanOptions.defaults(64, 80 * GIB));
        assertThat(roomy.frontend().fits()).isTrue();
        // 11.27 GiB... per expert 84 MiB in bf16, 256 experts × 58 layers = 1.2 TiB of experts: 16 workers of 80 GiB hold 16 per layer (76 GiB)
        assertThat(roomy.minWorkers()).isEqualTo(16);
        assertThat(roomy.fits()).isTrue();
    }

    @Test
    void minWorkersIsTheSmallestCountThatFits() {
        PlanModel m = ParameterCountTest.real("qwen3-30b-a3b");
        for (WeightFormat f : new WeightFormat[] {WeightFormat.BF16, WeightFormat.Q8_0, WeightFormat.Q4_K}) {
            PlanOptions o = PlanOptions.defaults(1, 16 * GIB).withExpertDtype(f);
            Integer min = CapacityPlanner.plan(m, o).minWorkers();
            assertThat(min).as("%s", f).isNotNull();
            assertThat(CapacityPlanner.plan(m, o.withWorkers(min)).fits()).isTrue();
            if (min > 1) {
                assertThat(CapacityPlanner.plan(m, o.withWorkers(min - 1)).fits()).isFalse();
            }
        }
        // 128 experts × 48 layers × 9 MiB = 54 GiB of bf16 experts; 15.2 GiB in q4_k (4.5 bits per weight)
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, 16 * GIB)).minWorkers()).isEqualTo(4);
        assertThat(CapacityPlanner.plan(m, PlanOptions.defaults(1, 16 * GIB).withExpertDtype(WeightFormat.Q4_K)).minWorkers()).isEqualTo(1);
    }

    @Test
    void badOptionsAreRefusedWithMessagesThatNameThem() {
        PlanModel m = mixtral();
        assertThatThrownBy(() -> PlanOptions.defaults(0, GIB)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("workers");
        assertThatThrownBy(() -> PlanOptions.defaults(2, GIB).withExpertShards(3)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("expert shards 3");
        assertThatThrownBy(() -> CapacityPlanner.plan(m, PlanOptions.defaults(4, GIB).withExpertShards(3)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("do not divide").hasMessageContaining("14336");
        assertThatThrownBy(() -> PlanOptions.defaults(1, GIB).withWeightDtype(WeightFormat.Q8_0)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> WeightFormat.parse("int3")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("q4_k");
    }

    @Test
    void jsonHasTheAgreedFields() {
        CapacityPlan plan = CapacityPlanner.plan(mixtral(), PlanOptions.defaults(4, 24 * GIB).withExpertShards(2));
        JsonNode j = PlanReport.json(plan);
        assertThat(j.get("total_params").asLong()).isEqualTo(mixtral().params().total());
        assertThat(j.get("active_params").asLong()).isEqualTo(mixtral().params().active());
        assertThat(j.get("workers").size()).isEqualTo(4);
        assertThat(j.get("workers").get(0).get("bytes").asLong()).isEqualTo(plan.workers().get(0).bytes());
        assertThat(j.get("workers").get(0).get("layers").get(0).get("shards")).isNotNull();
        assertThat(j.get("frontend").get("bytes").asLong()).isEqualTo(plan.frontend().bytes());
        assertThat(j.get("fits").isBoolean()).isTrue();
        assertThat(j.get("min_workers").asInt()).isEqualTo(plan.minWorkers());
        assertThat(j.get("placement").get("describe").get(0).asText()).startsWith("placement epoch 0");
        JsonNode none = PlanReport.json(CapacityPlanner.plan(mixtral(), PlanOptions.defaults(1, GIB)));
        assertThat(none.get("min_workers").isNull()).isTrue();
        assertThat(none.get("fits").asBoolean()).isFalse();
    }

    @Test
    void textShowsTheModelThePlacementTheTableAndTheAnswer() {
        List<String> text = PlanReport.text(CapacityPlanner.plan(mixtral(), PlanOptions.defaults(4, 24 * GIB)));
        String all = String.join("\n", text);
        assertThat(all).contains("MixtralForCausalLM").contains("46.70B total, 12.88B active")
                .contains("placement epoch 0, policy contiguous, 4 worker(s)")
                .contains("worker 0 (w0): 64 experts — layers 0-31: 0-1")
                .contains("fits: yes").contains("minimum workers: 4");
        assertThat(text).anyMatch(l -> l.matches("\\s+w3\\s+64\\s+64\\s+21\\.00 GiB\\s+21\\.50 GiB\\s+yes"));
    }

    @Test
    void gptOssExpertsCountAsTheirMxfp4Blocks() {
        PlanModel oss = ParameterCountTest.real("gpt-oss-20b");
        CapacityPlan plan = CapacityPlanner.plan(oss, PlanOptions.defaults(2, 16 * GIB).withExpertDtype(WeightFormat.MXFP4));
        // gate and up [2880, 2880] and down [2880, 2880]: 2880 × 90 blocks of 17 bytes each
        assertThat(plan.expertBytes()).isEqualTo(3L * 2880 * (2880 / 32) * 17);
        assertThat(WeightFormat.MXFP4.bitsPerWeight()).isEqualTo(4.25);
    }
}
