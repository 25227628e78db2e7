package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.CheckpointExperts;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.model.quant.QuantizedExperts;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertWeights;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.tensor.DType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * --expert-dtype with remote workers: each worker maps its own experts from the model's
 * converted-experts cache (and nothing of the checkpoint's expert tensors), and the result is
 * the same function as the same quantized experts computed in one process.
 */
@Timeout(120)
class QuantizedWorkersTest {
    @TempDir
    Path tmp;

    final InProcessWorkers workers = new InProcessWorkers();

    @AfterEach
    void stop() {
        workers.close();
    }

    /** A private copy of a fixture: the cache is written into the model folder, and the shared fixtures stay untouched. */
    private Path copyOf(String fixture) throws IOException {
        Path src = Fixtures.model(fixture);
        Path dst = tmp.resolve(fixture);
        Files.createDirectories(dst);
        try (Stream<Path> files = Files.list(src)) {
            files.filter(Files::isRegularFile).forEach(f -> {
                try {
                    Files.copy(f, dst.resolve(f.getFileName()));
                } catch (IOException e) {
                    throw new UncheckedIOException(e);
                }
            });
        }
        return dst;
    }

    @Test
    void workersMapTheirQ8ExpertsFromTheCacheAndComputeTheSameFunction() throws IOException {
        Path model = copyOf("mixtral");
        List<String> names = workers.of(WorkerModel.of(model).withExpertDType(DType.Q8_0), 2);
        try (LoadedModel ref = LoadedModel.load(model, LoadedModel.Options.defaults().withExpertDType(DType.Q8_0))) {
            ModelConfig cfg = ref.config();
            QuantizedExperts cache = ref.convertedExperts().orElseThrow();
            ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), names, ExpertPlacement.Policy.CONTIGUOUS,
                    EquivalenceChecks.EPOCHS.incrementAndGet());
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(model, p, GrpcExpertDispatcher.Config.defaults().withExpertDType(DType.Q8_0),
                    InProcessEquivalenceTest.IN_PROCESS).start()) {
                long sum = 0;
                for (int w = 0; w < names.size(); w++) {
                    long expected = 0;
                    for (int l = 0; l < cfg.layers(); l++) {
                        for (int e : p.expertsOn(w, l)) {
                            ExpertWeights x = cache.expert(l, e);
                            assertThat(x.gate().dtype()).isEqualTo(DType.Q8_0);
                            expected += x.gate().data().byteSize() + x.up().data().byteSize() + x.down().data().byteSize();
                        }
                    }
                    InfoResponse info = d.info(w);
                    assertThat(info.getMappedBytes()).as("worker %d maps exactly its Q8_0 experts from the cache", w).isEqualTo(expected);
                    sum += expected;
                }
                assertThat(sum).as("the workers together hold every expert once").isEqualTo(cache.bytes());

                MoeTransformer remote = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                for (Fixtures.Case c : Fixtures.cases("mixtral")) {
                    int n = c.tokens().length;
                    KvCache a = ref.transformer().newCache(n);
                    KvCache b = remote.newCache(n);
                    float[] want = ref.transformer().forward(a, c.tokens(), n, true, RoutingListener.NONE);
                    float[] got = remote.forward(b, c.tokens(), n, true, RoutingListener.NONE);
                    assertThat(Fixtures.maxAbsDiff(want, got)).as("logits, Q8_0 experts on 2 workers vs in process").isLessThanOrEqualTo(1e-5);
                    assertThat(Fixtures.greedy(remote, c.tokens(), 6)).containsExactly(Fixtures.greedy(ref.transformer(), c.tokens(), 6));
                }
            }
            // the dtype the checkpoint already stores its experts in: mapped from the checkpoint, no cache copy made
            List<String> bf16 = workers.of(WorkerModel.of(model).withExpertDType(DType.BF16), 2);
            ExpertPlacement p1 = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), bf16, ExpertPlacement.Policy.CONTIGUOUS,
                    EquivalenceChecks.EPOCHS.incrementAndGet());
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(model, p1, GrpcExpertDispatcher.Config.defaults().withExpertDType(DType.BF16),
                    InProcessEquivalenceTest.IN_PROCESS).start();
                 Checkpoint header = Checkpoint.open(model, SafetensorsFile.Mapping.PER_TENSOR)) {
                CheckpointExperts experts = new CheckpointExperts(cfg, header);
                for (int w = 0; w < bf16.size(); w++) {
                    long expected = 0;
                    for (int l = 0; l < cfg.layers(); l++) {
                        for (int e : p1.expertsOn(w, l)) {
                            for (String n : experts.tensorNames(l, e)) {
                                expected += header.entry(n).end() - header.entry(n).begin();
                            }
                        }
                    }
                    assertThat(d.info(w).getMappedBytes()).as("worker %d maps its BF16 experts from the checkpoint", w).isEqualTo(expected);
                }
                try (Stream<Path> cached = Files.list(model.resolve(".epserve-cache"))) {
                    assertThat(cached.map(f -> f.getFileName().toString())).noneMatch(f -> f.contains("-bf16"));
                }
            }
            // a dtype the checkpoint's experts cannot be stored in: Assign fails, naming the worker and the tensor
            List<String> q4k = workers.of(WorkerModel.of(model).withExpertDType(DType.Q4_K), 2);
            ExpertPlacement p2 = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), q4k, ExpertPlacement.Policy.CONTIGUOUS,
                    EquivalenceChecks.EPOCHS.incrementAndGet());
            assertThatThrownBy(() -> new GrpcExpertDispatcher(model, p2, GrpcExpertDispatcher.Config.defaults().withExpertDType(DType.Q4_K),
                    InProcessEquivalenceTest.IN_PROCESS).start())
                    .isInstanceOf(WorkerException.class)
                    .hasMessageContaining("failed Assign")
                    .hasMessageContaining("Q4_K")
                    .hasMessageContaining("experts.");
        }
    }
}
