package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.LoadedModel;
import io.epserve.model.ModelExperts;
import io.epserve.model.MoeTransformer;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertPlacement;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * gpt-oss (MXFP4 experts with biases and the clamped SwiGLU) and DeepSeek-V2 / V2-Lite on remote
 * expert workers: 1, 2 and 4 workers over the in-process transport, 2 worker processes over TCP,
 * and the frontend's own experts (its failover path) all give the single-process logits bit for bit.
 */
@Timeout(120)
class ArchWorkersTest {
    static final InProcessWorkers WORKERS = new InProcessWorkers();

    @AfterAll
    static void stopWorkers() {
        WORKERS.close();
    }

    static Stream<String> models() {
        return Fixtures.ARCH_MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void inProcessWorkersEqualOneProcess(String name) {
        EquivalenceChecks.sameAsSingleProcess(name, WORKERS.of(name, 4), InProcessEquivalenceTest.IN_PROCESS);
    }

    /** What a frontend computes when its workers fail: the same experts as the workers and the single process. */
    @ParameterizedTest
    @MethodSource("models")
    void theFrontendsOwnExpertsEqualOneProcess(String name) {
        try (LoadedModel ref = Fixtures.load(name);
             ExpertDispatcher own = ModelExperts.frontendDispatcher(Fixtures.model(name), ref.config(), ref.weights(), null)) {
            MoeTransformer t = new MoeTransformer(ref.weights(), own, MoeTransformer.RouterChoice.LEARNED);
            for (Fixtures.Case c : Fixtures.cases(name)) {
                Fixtures.Run want = Fixtures.run(ref.transformer(), c);
                Fixtures.Run got = Fixtures.run(t, c);
                assertThat(Fixtures.maxAbsDiff(got.logits(), want.logits())).as("%s: max |Δlogit| vs single process", name).isZero();
                assertThat(got.generated()).containsExactly(c.generated());
            }
        }
    }

    @Test
    void gptOssOnTwoWorkerProcessesEqualsOneProcess() {
        String name = "gpt_oss";
        try (LocalWorkerProcesses workers = WorkerProcesses.start(2, Fixtures.model(name));
             LoadedModel ref = Fixtures.load(name);
             LoadedModel remote = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults().withDispatchers(
                     RemoteExperts.on(workers.addresses(), ExpertPlacement.Policy.ROUND_ROBIN,
                             GrpcExpertDispatcher.Config.defaults())))) {
            assertThat(remote.dispatcher()).isInstanceOf(GrpcExpertDispatcher.class);
            for (Fixtures.Case c : Fixtures.cases(name)) {
                Fixtures.Run want = Fixtures.run(ref.transformer(), c);
                Fixtures.Run got = Fixtures.run(remote.transformer(), c);
                assertThat(Fixtures.maxAbsDiff(got.logits(), want.logits())).as("gpt_oss: max |Δlogit| vs single process").isZero();
                assertThat(got.generated()).containsExactly(c.generated());
            }
            assertThat(((GrpcExpertDispatcher) remote.dispatcher()).stats().workers()).allSatisfy(w -> assertThat(w.calls()).isPositive());
        }
    }
}
