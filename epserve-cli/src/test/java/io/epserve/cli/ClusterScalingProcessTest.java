package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@code epserve cluster --min-workers 1 --max-workers 4} with real processes: under a load that
 * keeps the expert layer busy it starts workers, which join the running frontend and get experts;
 * when the load stops it retires them again (SIGTERM: each drains and exits 0) down to one worker.
 * The windows are short and the busy targets low (the tiny model's experts compute in
 * microseconds per call, so "saturated" for it is a small fraction) so the test is quick; the
 * policy itself is unit-tested in ScalingPolicyTest.
 */
@Timeout(240)
class ClusterScalingProcessTest {
    static final Duration WAIT = Duration.ofSeconds(90);
    static final Pattern ADDED = Pattern.compile("worker \\d+ \\(\\S+\\) added as pid \\d+");
    static final Pattern DRAINED = Pattern.compile("retired: drained and exited 0");
    static final Pattern RETIRED = Pattern.compile("retired: ");

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    @Test
    void growsUnderLoadAndShrinksWhenTheLoadStops() throws Exception {
        Path model = ServeCommandTest.tinyModel();
        int membershipPort = freePort();
        int httpPort = freePort();
        try (ClusterProcess cluster = ClusterProcess.start("--min-workers", "1", "--max-workers", "4", "--worker-threads", "1",
                "--model", model.toString(), "--join", "127.0.0.1:" + membershipPort,
                "--frontend-metrics", "http://127.0.0.1:" + httpPort + "/metrics",
                "--scale-up-busy", "0.01", "--scale-up-window", "2s", "--scale-down-busy", "0.001", "--scale-down-window", "3s",
                "--scale-cooldown", "3s", "--scale-interval", "500ms", "--drain-timeout", "30s")) {
            ClusterProcess.Started started = cluster.awaitStarted(1);
            ServeCommand serveCommand = ServeCommandTest.parse("--model", model.toString(), "--port", Integer.toString(httpPort),
                    "--workers", started.workersList(), "--membership-listen", "127.0.0.1:" + membershipPort, "--kv-memory", "32MiB",
                    "--no-validate", "--worker-timeout", "5000");
            try (ServeCommand.Running serve = serveCommand.start(new PrintStream(OutputStream.nullOutputStream(), true,
                    StandardCharsets.UTF_8), new TerminalProgress(System.err, false))) {
                AtomicBoolean loading = new AtomicBoolean(true);
                List<String> failures = new ArrayList<>();
                AtomicInteger done = new AtomicInteger();
                try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
                    load(serve, clients, loading, failures, done);
                    await("a worker added under load, serving experts of the frontend", () ->
                            cluster.count(ADDED) >= 1 && serving(serve) >= 2, cluster);
                    loading.set(false);
                }
                assertThat(failures).as("requests failed while the cluster grew").isEmpty();
                assertThat(done.get()).isPositive();
                await("every added worker retired and drained, back to one worker", () ->
                        cluster.count(RETIRED) == cluster.count(ADDED) && listed(serve) == 1, cluster);
                assertThat(cluster.count(DRAINED)).as("each retired worker drained and exited 0:\n%s", cluster.everything())
                        .isEqualTo(cluster.count(ADDED));
                assertThat(cluster.everything()).contains("scaling up (mean busy fraction", "scaling down (every worker's busy fraction");
                cluster.everything().lines().filter(l -> l.startsWith("epserve cluster:")).forEach(System.err::println);
            }
        }
    }

    /** Closed-loop streaming clients until {@code loading} is false. */
    static void load(ServeCommand.Running serve, ExecutorService clients, AtomicBoolean loading, List<String> failures, AtomicInteger done) {
        HttpClient http = StreamingCompletion.newClient();
        URI base = serve.base().resolve("/");
        int vocab = serve.model().config().vocabSize();
        for (int c = 0; c < 16; c++) {
            int client = c;
            clients.submit(() -> {
                for (int i = 0; loading.get(); i++) {
                    int[] prompt = new SplittableRandom(client * 100_003L + i).ints(16, 0, vocab).toArray();
                    try {
                        StreamingCompletion.send(http, base, new StreamingCompletion.Request(serve.served().id(), prompt, 64, 0.0, i),
                                WAIT, StreamingCompletion.Progress.NONE);
                        done.incrementAndGet();
                    } catch (StreamingCompletion.Failure f) {
                        synchronized (failures) {
                            failures.add(f.getMessage());
                        }
                    }
                }
                return null;
            });
        }
    }

    /** Workers the frontend lists as serving with experts. */
    static int serving(ServeCommand.Running serve) {
        int n = 0;
        for (JsonNode w : workers(serve)) {
            if (w.path("state").asText().equals("serving") && w.path("experts").asInt() > 0) {
                n++;
            }
        }
        return n;
    }

    /** Workers the frontend lists at all. */
    static int listed(ServeCommand.Running serve) {
        return workers(serve).size();
    }

    static JsonNode workers(ServeCommand.Running serve) {
        try {
            return ServeCommandTest.JSON.readTree(ServeCommandTest.get(serve.base().resolve("/v1/epserve/workers")).body()).path("workers");
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    static void await(String what, BooleanSupplier condition, ClusterProcess cluster) {
        long end = System.nanoTime() + WAIT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("not within " + WAIT.toSeconds() + " s: " + what + "; the cluster printed:\n" + cluster.everything());
            }
            LockSupport.parkNanos(200_000_000); // polls the condition; the deadline bounds the wait
        }
    }
}
