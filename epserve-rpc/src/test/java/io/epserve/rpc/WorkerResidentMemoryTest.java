package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.v1.InfoResponse;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Each of W ∈ {1, 2, 4} worker processes keeps ≈ 1/W of all expert bytes resident, plus a
 * fixed overhead. Measured on a model whose experts dominate (50 MB of BF16 experts), as the
 * growth of each worker's file-backed resident memory (RssFile) from before its Assign to after
 * it: the Assign maps its experts and reads them all (the finite check), so they are resident.
 */
@Timeout(180)
class WorkerResidentMemoryTest {
    /** hidden 256, 4 layers, 8 experts top-2, expert FFN 1024: 4·8·3·256·1024·2 B = 50.3 MB of experts. */
    static final DemoModel.Spec SPEC = new DemoModel.Spec("resident-test", 256, 4, 4, 2, 8, 2, 1024, 512, 1e6, 4096, 99L);

    @TempDir
    static Path dir;

    @BeforeAll
    static void writeModel() throws Exception {
        DemoModel.write(SPEC, dir, Progress.NONE);
    }

    @Test
    void eachWorkerKeepsItsShareResident() {
        long allExperts;
        ModelConfig cfg;
        try (Checkpoint c = Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR)) {
            cfg = ModelConfig.from(c.config());
            allExperts = c.names().stream().filter(LoadedModel::isRoutedExpertTensor)
                    .mapToLong(n -> c.entry(n).end() - c.entry(n).begin()).sum();
        }
        assertThat(allExperts).isEqualTo(4L * 8 * 3 * 256 * 1024 * 2);
        StringBuilder table = new StringBuilder();
        for (int w : new int[] {1, 2, 4}) {
            try (LocalWorkerProcesses procs = WorkerProcesses.start(w, dir)) {
                long[] before = new long[w];
                ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), procs.addresses(),
                        ExpertPlacement.Policy.CONTIGUOUS, 1);
                try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(dir, p,
                        GrpcExpertDispatcher.Config.defaults().withDeadline(Duration.ofSeconds(60)))) {
                    for (int i = 0; i < w; i++) {
                        before[i] = d.info(i).getResidentFileBytes();
                    }
                    d.start();
                    for (int i = 0; i < w; i++) {
                        InfoResponse info = d.info(i);
                        long grown = info.getResidentFileBytes() - before[i];
                        long share = allExperts / w;
                        table.append(String.format("W=%d worker %d: experts resident %.1f MB (share %.1f MB), RSS %.1f MB%n",
                                w, i, grown / 1e6, share / 1e6, info.getResidentBytes() / 1e6));
                        assertThat(info.getMappedBytes()).as("W=%d worker %d mapped", w, i).isEqualTo(share);
                        // the share, plus at most 3 MB of other file pages touched meanwhile (class files, CDS)
                        assertThat(grown).as("W=%d worker %d resident growth", w, i)
                                .isBetween(share - share / 50, share + 3_000_000L);
                    }
                }
            }
        }
        System.out.print(table);
    }
}
