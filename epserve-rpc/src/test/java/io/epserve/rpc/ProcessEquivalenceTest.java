package io.epserve.rpc;

import java.util.stream.Stream;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Equivalence with separate worker processes on loopback: four JVMs per fixture (a worker
 * serves the model of its command line), re-assigned for 1, 2 and 4 workers.
 */
@Timeout(180)
class ProcessEquivalenceTest {

    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void logitsAndGreedyTokensEqualSingleProcess(String name) {
        try (LocalWorkerProcesses workers = WorkerProcesses.start(4, Fixtures.model(name))) {
            EquivalenceChecks.sameAsSingleProcess(name, workers.addresses(), GrpcExpertDispatcher.TCP);
        }
    }
}
