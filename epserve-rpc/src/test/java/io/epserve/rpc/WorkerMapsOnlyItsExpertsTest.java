package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.CheckpointExperts;
import io.epserve.model.ModelConfig;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.v1.InfoResponse;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * DESIGN.md §3.8: a worker maps only its experts. After Assign under 1, 2 and
 * 4 workers, each worker's mapped bytes (Info) are exactly the bytes of its experts' tensors, as
 * the checkpoint header gives them, and so no other tensor (embeddings, attention, router, shared
 * expert, other workers' experts) is mapped. A re-Assign to a smaller share unmaps the rest.
 */
@Timeout(60)
class WorkerMapsOnlyItsExpertsTest {
    static final InProcessWorkers WORKERS = new InProcessWorkers();

    @AfterAll
    static void stopWorkers() {
        WORKERS.close();
    }

    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void mappedBytesAreExactlyTheWorkersExperts(String name) {
        try (Checkpoint header = Checkpoint.open(Fixtures.model(name), SafetensorsFile.Mapping.PER_TENSOR)) {
            ModelConfig cfg = ModelConfig.from(header.config());
            CheckpointExperts experts = new CheckpointExperts(cfg, header);
            long allBytes = header.names().stream().mapToLong(n -> bytes(header, n)).sum();
            for (int w : new int[] {1, 2, 4}) {
                ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), WORKERS.of(name, w),
                        ExpertPlacement.Policy.CONTIGUOUS, EquivalenceChecks.EPOCHS.incrementAndGet());
                try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p,
                        GrpcExpertDispatcher.Config.defaults(), InProcessEquivalenceTest.IN_PROCESS).start()) {
                    long sum = 0;
                    for (int i = 0; i < w; i++) {
                        Set<String> tensors = new LinkedHashSet<>();
                        for (int l = 0; l < cfg.layers(); l++) {
                            for (int e : p.expertsOn(i, l)) {
                                tensors.addAll(experts.tensorNames(l, e));
                            }
                        }
                        long expected = tensors.stream().mapToLong(n -> bytes(header, n)).sum();
                        InfoResponse info = d.info(i);
                        assertThat(info.getAssigned()).isTrue();
                        assertThat(info.getEpoch()).isEqualTo(p.epoch());
                        assertThat(info.getExpertCount()).isEqualTo(p.expertCountOn(i));
                        assertThat(info.getMappedBytes()).as("%s, worker %d of %d: mapped bytes", name, i, w).isEqualTo(expected);
                        assertThat(info.getLayersList().stream().mapToInt(le -> le.getExpertsCount()).sum()).isEqualTo(p.expertCountOn(i));
                        sum += info.getMappedBytes();
                    }
                    long expertBytes = header.names().stream().filter(n -> n.contains(".experts.")).mapToLong(n -> bytes(header, n)).sum();
                    assertThat(sum).as("%s: all workers together map every expert once", name).isEqualTo(expertBytes);
                    assertThat(sum).as("%s: and nothing else", name).isLessThan(allBytes);
                }
            }
        }
    }

    private static long bytes(Checkpoint c, String name) {
        SafetensorsFile.Entry e = c.entry(name);
        return e.end() - e.begin();
    }
}
