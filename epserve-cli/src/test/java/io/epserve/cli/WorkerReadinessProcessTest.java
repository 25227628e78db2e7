package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.rpc.LocalWorkerProcesses;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The frontend's side of worker failures, with real worker processes (`epserve worker`) on
 * loopback: /ready follows the workers (503 with the reason while one is dead, 200 once it is
 * back), /health stays a liveness check, the gauges say the same; start-up against a silent peer
 * fails within the connect deadline, naming it.
 */
@Timeout(180)
class WorkerReadinessProcessTest {
    @TempDir
    Path tmp;

    static final Duration WAIT = Duration.ofSeconds(60);
    static final Duration POLL = Duration.ofMillis(100);

    /** Polls {@code uri} until the response satisfies {@code done}; fails after {@link #WAIT}. */
    static HttpResponse<String> awaitResponse(URI uri, Predicate<HttpResponse<String>> done, String what) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        HttpResponse<String> last;
        do {
            last = ServeCommandTest.get(uri);
            if (done.test(last)) {
                return last;
            }
            LockSupport.parkNanos(POLL.toNanos()); // poll interval, not a wait for state: the loop checks the condition
        } while (System.nanoTime() < deadline);
        throw new AssertionError("not " + what + " within " + WAIT.toSeconds() + " s; last: " + last.statusCode() + " " + last.body());
    }

    @Test
    void readyFollowsTheWorkersAndHealthStaysUp() throws Exception {
        Path model = ServeCommandTest.tinyModel();
        Path secret = tmp.resolve("secret");
        Files.writeString(secret, "a-test-secret-of-sufficient-length\n");
        LocalWorkerProcesses.CommandLine cmd = LocalWorkerProcesses.sameJvm(Main.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"),
                List.of("worker", "--model", model.toString(), "--auth-secret-file", secret.toString()));
        try (LocalWorkerProcesses workers = LocalWorkerProcesses.start(2, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60))) {
            String a0 = workers.address(0);
            String a1 = workers.address(1);
            ServeCommand serve = ServeCommandTest.parse("--model", model.toString(), "--port", "0", "--workers", a0 + "," + a1,
                    "--worker-secret-file", secret.toString(), "--worker-timeout", "20000", "--kv-memory", "8MiB", "--no-validate");
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try (ServeCommand.Running r = serve.start(new PrintStream(out, true, StandardCharsets.UTF_8),
                    new TerminalProgress(System.err, false))) {
                URI ready = r.base().resolve("/ready");
                URI health = r.base().resolve("/health");
                URI metrics = r.base().resolve("/metrics");
                awaitResponse(ready, x -> x.statusCode() == 200, "ready at start");
                String m = ServeCommandTest.get(metrics).body();
                assertThat(ServeCommandTest.metric(m, "epserve_ready")).isEqualTo(1.0);
                assertThat(ServeCommandTest.metric(m, "epserve_worker_up{worker=\"" + a1 + "\"}")).isEqualTo(1.0);

                workers.kill(1);
                HttpResponse<String> down = awaitResponse(ready, x -> x.statusCode() == 503, "503 after a worker died");
                JsonNode body = ServeCommandTest.JSON.readTree(down.body());
                assertThat(body.path("reason").asText()).contains("expert worker " + a1 + " is down").doesNotContain(a0);
                assertThat(ServeCommandTest.get(health).statusCode()).as("/health is liveness only").isEqualTo(200);
                m = ServeCommandTest.get(metrics).body();
                assertThat(ServeCommandTest.metric(m, "epserve_ready")).isEqualTo(0.0);
                assertThat(m).contains("epserve_worker_up{worker=\"" + a1 + "\"} 0");
                assertThat(ServeCommandTest.metric(m, "epserve_worker_up{worker=\"" + a0 + "\"}")).isEqualTo(1.0);

                assertThat(workers.restart(1)).isEqualTo(a1);
                awaitResponse(ready, x -> x.statusCode() == 200, "ready again after the worker came back");
                HttpResponse<String> c = ServeCommandTest.post(r.base().resolve("/v1/completions"),
                        "{\"prompt\": \"back again\", \"max_tokens\": 3, \"ignore_eos\": true}");
                assertThat(c.statusCode()).as(c.body()).isEqualTo(200);
                // membership may have placed the dead worker out before it came back: it is up again once it rejoins
                awaitResponse(metrics, x -> ServeCommandTest.metric(x.body(), "epserve_worker_up{worker=\"" + a1 + "\"}") == 1.0,
                        "the restarted worker up again");
            }
        }
    }

    @Test
    void startUpAgainstASilentPeerFailsWithinTheDeadlineNamingIt() throws IOException {
        List<Socket> accepted = new CopyOnWriteArrayList<>();
        try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
            Thread.ofVirtual().start(() -> {
                try {
                    while (true) {
                        accepted.add(silent.accept());
                    }
                } catch (IOException closed) {
                    // the server socket closed: the test is over
                }
            });
            String address = "127.0.0.1:" + silent.getLocalPort();
            long t0 = System.nanoTime();
            CliRunner.Outcome o = CliRunner.inProcess("generate", "--model", ServeCommandTest.tinyModel().toString(), "--tokens",
                    "1,2,3", "--max-tokens", "2", "--workers", address, "--worker-connect-timeout", "1500", "--no-validate");
            long millis = (System.nanoTime() - t0) / 1_000_000;
            assertThat(o.exitCode()).as(o.err()).isEqualTo(2);
            assertThat(o.err()).contains("connecting to 1 expert worker(s) " + address)
                    .contains("worker " + address + " did not answer within 1500 ms").doesNotContain("internal error");
            // WorkerSecurityProcessTest times the deadline itself; here loading the model first on a busy machine dominates
            assertThat(millis).as("time to give up").isLessThan(60_000);
        } finally {
            for (Socket s : accepted) {
                s.close();
            }
        }
    }
}
