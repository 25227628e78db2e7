package io.epserve.rpc;

import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Issue 3 acceptance with separate worker processes on loopback: four JVMs started once for the
 * class and re-assigned for 1, 2 and 4 workers of every fixture.
 */
@Timeout(180)
class ProcessEquivalenceTest {
    static LocalWorkerProcesses workers;

    @BeforeAll
    static void startWorkers() {
        workers = WorkerProcesses.start(4);
    }

    @AfterAll
    static void stopWorkers() {
        if (workers != null) {
            workers.close();
        }
    }

    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    @ParameterizedTest
    @MethodSource("models")
    void logitsAndGreedyTokensEqualSingleProcess(String name) {
        EquivalenceChecks.sameAsSingleProcess(name, workers.addresses(), GrpcExpertDispatcher.TCP);
    }
}
