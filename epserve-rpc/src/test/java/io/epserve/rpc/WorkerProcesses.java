package io.epserve.rpc;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** Worker JVMs for tests: ModelWorkerMain on this test class path, one kernel thread each (2-core CI). */
final class WorkerProcesses {
    private WorkerProcesses() {}

    /** {@code n} workers serving {@code model}, with {@code extraArgs} (e.g. --expert-dtype, --auth-secret-file). */
    static LocalWorkerProcesses start(int n, Path model, String... extraArgs) {
        List<String> args = new ArrayList<>(List.of("--model", model.toString()));
        args.addAll(List.of(extraArgs));
        LocalWorkerProcesses.CommandLine cmd = LocalWorkerProcesses.sameJvm(ModelWorkerMain.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"), args);
        return LocalWorkerProcesses.start(n, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60));
    }
}
