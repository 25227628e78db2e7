package io.epserve.rpc;

import java.time.Duration;
import java.util.List;

/** Worker JVMs for tests: WorkerProcessMain on this test class path, one kernel thread each (2-core CI). */
final class WorkerProcesses {
    private WorkerProcesses() {}

    static LocalWorkerProcesses start(int n) {
        LocalWorkerProcesses.CommandLine cmd = LocalWorkerProcesses.sameJvm(WorkerProcessMain.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"), List.of());
        return LocalWorkerProcesses.start(n, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60));
    }
}
