package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.RoutingListener;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Expert workers serving a GGUF file: 2 workers compute what one process computes, bit for bit. */
@Timeout(120)
class GgufWorkersTest {
    static final InProcessWorkers WORKERS = new InProcessWorkers();

    @AfterAll
    static void stopWorkers() {
        WORKERS.close();
    }

    @Test
    void twoWorkersOnAQ4KmFileEqualOneProcess(@TempDir Path tmp) throws IOException {
        // Q4_K experts computed in place, Q6_K ones (blk.1.ffn_down_exps) converted once beside the file, which every process maps
        Path file = Files.createSymbolicLink(tmp.resolve("synth-moe-q4_k_m.gguf"),
                Fixtures.root().resolve("gguf").resolve("synth-moe-q4_k_m.gguf"));
        int[] tokens = {1, 2035, 1094, 1644, 522, 181};
        try (LoadedModel ref = LoadedModel.load(file, LoadedModel.Options.defaults());
             LoadedModel remote = LoadedModel.load(file, LoadedModel.Options.defaults().withDispatchers(
                     RemoteExperts.on(WORKERS.of(WorkerModel.of(file), 2), ExpertPlacement.Policy.ROUND_ROBIN,
                             GrpcExpertDispatcher.Config.defaults(), InProcessEquivalenceTest.IN_PROCESS)))) {
            KvCache a = ref.transformer().newCache(tokens.length);
            KvCache b = remote.transformer().newCache(tokens.length);
            float[] want = ref.transformer().forward(a, tokens, tokens.length, true, RoutingListener.NONE);
            float[] got = remote.transformer().forward(b, tokens, tokens.length, true, RoutingListener.NONE);
            assertThat(got).containsExactly(want);
            assertThat(((GrpcExpertDispatcher) remote.dispatcher()).stats().workers()).allSatisfy(w -> assertThat(w.calls()).isPositive());
        }
    }
}
