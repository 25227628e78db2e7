package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code epserve cluster} as a process: a worker killed with SIGKILL is started again on its
 * address, a frontend then generates the same tokens through the cluster as before the kill, and
 * stopping the cluster stops every worker.
 */
@Timeout(240)
class ClusterSupervisionTest {
    @Test
    void aKilledWorkerIsRestartedAndServesAgain() throws Exception {
        Path model = CliRunner.fixtures().resolve("mixtral").resolve("model");
        try (ClusterProcess cluster = ClusterProcess.start("--workers", "2", "--worker-threads", "1", "--model", model.toString())) {
            ClusterProcess.Started started = cluster.awaitStarted(2);
            long[] pids = started.pids();
            String workers = started.workersList();
            CliRunner.Outcome before = CliRunner.inProcess("generate", "--model", model.toString(), "--workers", workers, "--tokens",
                    "1,2,3", "--max-tokens", "6", "--temperature", "0", "--ignore-eos");
            assertThat(before.exitCode()).as(before.err()).isZero();

            ProcessHandle.of(pids[1]).orElseThrow().destroyForcibly();
            Matcher back = cluster.await(Pattern.compile("worker 1 \\((\\S+)\\) restarted as pid (\\d+)"));
            long newPid = Long.parseLong(back.group(2));
            assertThat(newPid).isNotEqualTo(pids[1]);
            assertThat(workers).contains(back.group(1));
            assertThat(ProcessHandle.of(newPid)).isPresent();

            CliRunner.Outcome after = CliRunner.inProcess("generate", "--model", model.toString(), "--workers", workers, "--tokens",
                    "1,2,3", "--max-tokens", "6", "--temperature", "0", "--ignore-eos");
            assertThat(after.exitCode()).as(after.err()).isZero();
            assertThat(after.out()).isEqualTo(before.out());

            cluster.process().destroy(); // SIGTERM: the cluster stops its workers, and restarts none of them
            assertThat(cluster.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
            for (long pid : new long[] {pids[0], newPid}) {
                ProcessHandle h = ProcessHandle.of(pid).orElse(null);
                if (h != null) {
                    h.onExit().get(30, TimeUnit.SECONDS);
                }
            }
        }
    }
}
