package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
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
    static final Pattern WORKER = Pattern.compile("worker (\\d+): (\\S+) \\(pid (\\d+)\\)");
    static final Pattern WORKERS_LIST = Pattern.compile("^--workers (\\S+)");

    /** Lines of a child's stream, as they come. */
    static LinkedBlockingQueue<String> lines(InputStream in) {
        LinkedBlockingQueue<String> q = new LinkedBlockingQueue<>();
        Thread t = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
                for (String l; (l = r.readLine()) != null; ) {
                    q.add(l);
                }
            } catch (IOException ignored) {
                // the process ended
            }
        });
        t.setDaemon(true);
        t.start();
        return q;
    }

    /** The first line matching {@code p} within 120 s (every line read goes to {@code seen}). */
    static Matcher await(LinkedBlockingQueue<String> q, Pattern p, List<String> seen) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < end) {
            String l = q.poll(end - System.nanoTime(), TimeUnit.NANOSECONDS);
            if (l == null) {
                break;
            }
            seen.add(l);
            Matcher m = p.matcher(l);
            if (m.find()) {
                return m;
            }
        }
        throw new AssertionError("no line matching " + p + " within 120 s; saw:\n" + String.join("\n", seen));
    }

    @Test
    void aKilledWorkerIsRestartedAndServesAgain() throws Exception {
        Path model = CliRunner.fixtures().resolve("mixtral").resolve("model");
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"), "--add-modules",
                "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx512m", "-cp", System.getProperty("java.class.path"),
                Main.class.getName(), "cluster", "--workers", "2", "--worker-threads", "1", "--model", model.toString()));
        Process cluster = new ProcessBuilder(cmd).redirectErrorStream(true).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start();
        List<String> seen = new ArrayList<>();
        try {
            // stdout and stderr merged: the supervisor's reports are on stderr
            LinkedBlockingQueue<String> out = lines(cluster.getInputStream());
            LinkedBlockingQueue<String> err = out;
            long[] pids = new long[2];
            for (int i = 0; i < 2; i++) {
                Matcher m = await(out, WORKER, seen);
                pids[Integer.parseInt(m.group(1))] = Long.parseLong(m.group(3));
            }
            String workers = await(out, WORKERS_LIST, seen).group(1);
            CliRunner.Outcome before = CliRunner.inProcess("generate", "--model", model.toString(), "--workers", workers, "--tokens",
                    "1,2,3", "--max-tokens", "6", "--temperature", "0", "--ignore-eos");
            assertThat(before.exitCode()).as(before.err()).isZero();

            ProcessHandle.of(pids[1]).orElseThrow().destroyForcibly();
            Matcher back = await(err, Pattern.compile("worker 1 \\((\\S+)\\) restarted as pid (\\d+)"), seen);
            long newPid = Long.parseLong(back.group(2));
            assertThat(newPid).isNotEqualTo(pids[1]);
            assertThat(workers).contains(back.group(1));
            assertThat(ProcessHandle.of(newPid)).isPresent();

            CliRunner.Outcome after = CliRunner.inProcess("generate", "--model", model.toString(), "--workers", workers, "--tokens",
                    "1,2,3", "--max-tokens", "6", "--temperature", "0", "--ignore-eos");
            assertThat(after.exitCode()).as(after.err()).isZero();
            assertThat(after.out()).isEqualTo(before.out());

            cluster.destroy(); // SIGTERM: the cluster stops its workers, and restarts none of them
            assertThat(cluster.waitFor(60, TimeUnit.SECONDS)).isTrue();
            for (long pid : new long[] {pids[0], newPid}) {
                ProcessHandle h = ProcessHandle.of(pid).orElse(null);
                if (h != null) {
                    h.onExit().get(30, TimeUnit.SECONDS);
                }
            }
        } finally {
            cluster.destroyForcibly();
        }
    }
}
