package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.rpc.Failover;
import io.epserve.rpc.GrpcExpertDispatcher;
import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * No request lost through a worker failure, end to end with real processes: {@code epserve
 * cluster} supervises 4 worker processes on loopback, a {@code serve} frontend (in this JVM, so
 * the test can read its failover counters) runs on them, and 32 concurrent streaming greedy
 * requests are in flight when one worker is killed (SIGKILL) or hung (SIGSTOP). Every request
 * completes, with exactly the tokens of a run without the fault; the killed worker is restarted by
 * the cluster and serves again (GET /v1/epserve/workers: serving, holding experts, computing); the
 * hung one's steps move to the frontend at the deadline, and it serves again once continued.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(180)
class FailoverProcessTest {
    static final int WORKERS = 4;
    static final int CLIENTS = 32;
    static final int PROMPT_TOKENS = 12;
    /** Long enough that a fault sent once every stream has produced tokens lands well before any ends. */
    static final int MAX_TOKENS = 96;
    /** --worker-timeout: how long a step waits for a hung worker before the frontend computes it. */
    static final Duration WORKER_TIMEOUT = Duration.ofMillis(3000);
    static final Duration WAIT = Duration.ofSeconds(60);

    ClusterProcess cluster;
    ClusterProcess.Started workers;
    ServeCommand.Running serve;
    HttpClient http;
    int[][] reference;

    /** Pids of workers the cluster restarted during this class (0: the original still runs). */
    final long[] restartedPid = new long[WORKERS];

    @BeforeAll
    void startClusterAndFrontend() throws Exception {
        long t0 = System.nanoTime();
        Path model = ServeCommandTest.tinyModel();
        cluster = ClusterProcess.start("--workers", Integer.toString(WORKERS), "--worker-threads", "1", "--model", model.toString());
        workers = cluster.awaitStarted(WORKERS);
        System.err.printf("FailoverProcessTest: cluster up after %.1f s%n", (System.nanoTime() - t0) / 1e9);
        serve = ServeCommandTest.parse("--model", model.toString(), "--port", "0", "--workers", workers.workersList(),
                "--worker-timeout", Long.toString(WORKER_TIMEOUT.toMillis()), "--kv-memory", "32MiB", "--no-validate")
                .start(new PrintStream(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8), new TerminalProgress(System.err, false));
        http = StreamingCompletion.newClient();
        System.err.printf("FailoverProcessTest: serving after %.1f s%n", (System.nanoTime() - t0) / 1e9);
        Run clean = run(null);
        System.err.printf("FailoverProcessTest: reference run took %.1f s%n", clean.seconds());
        assertThat(clean.failures()).as("the run without a fault").isEmpty();
        reference = clean.tokens();
        for (int[] t : reference) {
            assertThat(t).hasSize(MAX_TOKENS);
        }
    }

    @AfterAll
    void stop() throws Exception {
        try {
            if (serve != null) {
                serve.close();
            }
        } finally {
            if (cluster != null) {
                cluster.close();
            }
        }
    }

    @Test
    void aWorkerKilledMidStreamFailsNoRequestAndChangesNoToken() throws Exception {
        awaitWorkersServe();
        String victim = workers.addresses().get(1);
        long pid = currentPid(1);
        long failoversBefore = failover().failovers();

        Run run = run(() -> ProcessHandle.of(pid).orElseThrow().destroyForcibly());

        assertThat(run.failures()).as("failed requests").isEmpty();
        assertThat(run.finishedAtFault()).as("requests already finished when the worker was killed").isZero();
        System.err.printf("FailoverProcessTest: the run with a kill took %.1f s%n", run.seconds());
        assertSameTokens(run);
        assertThat(failover().failovers()).as("the kill made steps fail over").isGreaterThan(failoversBefore);

        Matcher back = cluster.await(Pattern.compile("worker 1 \\(" + Pattern.quote(victim) + "\\) restarted as pid (\\d+)"));
        assertThat(Long.parseLong(back.group(1))).as("a new process").isNotEqualTo(pid);
        restartedPid[1] = Long.parseLong(back.group(1));
        awaitServes(victim);
    }

    @Test
    void aWorkerHungMidStreamFailsNoRequestAndChangesNoToken() throws Exception {
        awaitWorkersServe();
        String victim = workers.addresses().get(2);
        long pid = currentPid(2);
        long failoversBefore = failover().failovers();
        Run run;
        try {
            run = run(() -> ClusterSignals.send("STOP", pid));
            await(victim + " seen as down while stopped", () -> {
                try {
                    JsonNode w = workerEntry(victim);
                    return w != null && (w.path("state").asText().equals("suspect") || w.path("state").asText().equals("dead"));
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
            });
        } finally {
            ClusterSignals.send("CONT", pid);
        }
        assertThat(run.failures()).as("failed requests").isEmpty();
        assertThat(run.finishedAtFault()).as("requests already finished when the worker was stopped").isZero();
        System.err.printf("FailoverProcessTest: the run with a hang took %.1f s%n", run.seconds());
        assertSameTokens(run);
        assertThat(failover().failovers()).as("the hang made a step fail over").isGreaterThan(failoversBefore);
        assertThat(failover().lastFailure()).as("at the deadline").contains("within " + WORKER_TIMEOUT.toMillis() + " ms");
        // no hang: the streams went on at the frontend's speed instead of waiting for the worker
        assertThat(run.seconds()).isLessThan(WAIT.toSeconds());
        awaitServes(victim);
    }

    // ------------------------------------------------------------------------------------------

    long currentPid(int worker) {
        return restartedPid[worker] != 0 ? restartedPid[worker] : workers.pids()[worker];
    }

    GrpcExpertDispatcher dispatcher() {
        return (GrpcExpertDispatcher) serve.model().dispatcher();
    }

    Failover.Stats failover() {
        return dispatcher().failoverStats();
    }

    /** One run: every stream's tokens (null where it failed), failures, and how many had finished when the fault was sent. */
    record Run(int[][] tokens, List<String> failures, int finishedAtFault, double seconds) {}

    /**
     * {@link #CLIENTS} concurrent streaming greedy completions; with a {@code fault}, it runs once
     * every stream has produced two chunks of text (so it lands mid-stream).
     */
    Run run(Runnable fault) throws Exception {
        URI base = serve.base().resolve("/");
        String name = serve.served().id();
        int vocab = serve.model().config().vocabSize();
        CountDownLatch streaming = new CountDownLatch(CLIENTS);
        AtomicInteger finished = new AtomicInteger();
        long t0 = System.nanoTime();
        List<Future<int[]>> results = new ArrayList<>();
        int finishedAtFault = 0;
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < CLIENTS; i++) {
                int[] prompt = new SplittableRandom(1000 + i).ints(PROMPT_TOKENS, 0, vocab).toArray();
                StreamingCompletion.Request req = new StreamingCompletion.Request(name, prompt, MAX_TOKENS, 0.0, i);
                results.add(clients.submit(() -> {
                    try {
                        return StreamingCompletion.send(http, base, req, WAIT, chunks -> {
                            if (chunks == 2) {
                                streaming.countDown();
                            }
                        }).tokenIds();
                    } finally {
                        finished.incrementAndGet();
                        streaming.countDown(); // a request that ends early must not keep the fault waiting
                    }
                }));
            }
            if (fault != null) {
                assertThat(streaming.await(WAIT.toSeconds(), TimeUnit.SECONDS)).as("every stream produced tokens").isTrue();
                finishedAtFault = finished.get();
                fault.run();
            }
        }
        int[][] tokens = new int[CLIENTS][];
        List<String> failures = new ArrayList<>();
        for (int i = 0; i < CLIENTS; i++) {
            try {
                tokens[i] = results.get(i).get();
            } catch (ExecutionException e) {
                failures.add("request " + i + ": " + e.getCause().getMessage());
            }
        }
        return new Run(tokens, failures, finishedAtFault, (System.nanoTime() - t0) / 1e9);
    }

    void assertSameTokens(Run run) {
        for (int i = 0; i < CLIENTS; i++) {
            assertThat(run.tokens()[i]).as("tokens of request %d against the run without a fault", i).containsExactly(reference[i]);
        }
    }

    /** Every worker answers and computes: the frontend is not holding the experts itself. */
    void awaitWorkersServe() {
        await("the workers compute the steps (no failover hold)", () -> !failover().holding());
    }

    /**
     * {@code worker} serves again: the frontend lists it as serving with experts of the current
     * placement, and with requests flowing its dispatch calls grow while the frontend holds
     * nothing itself.
     */
    void awaitServes(String worker) {
        URI completions = serve.base().resolve("/v1/completions");
        await(worker + " serves again", () -> {
            try {
                JsonNode before = workerEntry(worker);
                assertThat(ServeCommandTest.post(completions, "{\"prompt\": [1, 2, 3], \"max_tokens\": 4, \"ignore_eos\": true}")
                        .statusCode()).isEqualTo(200);
                JsonNode after = workerEntry(worker);
                return !failover().holding() && before != null && after != null && after.path("state").asText().equals("serving")
                        && after.path("experts").asInt() > 0 && after.path("calls").asLong() > before.path("calls").asLong();
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** {@code worker}'s entry in GET /v1/epserve/workers, or null when it is not listed. */
    JsonNode workerEntry(String worker) throws Exception {
        JsonNode body = ServeCommandTest.JSON.readTree(ServeCommandTest.get(serve.base().resolve("/v1/epserve/workers")).body());
        for (JsonNode w : body.path("workers")) {
            if (w.path("address").asText().equals(worker)) {
                return w;
            }
        }
        return null;
    }

    static void await(String what, BooleanSupplier condition) {
        long end = System.nanoTime() + WAIT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > end) {
                throw new AssertionError("not within " + WAIT.toSeconds() + " s: " + what);
            }
            LockSupport.parkNanos(50_000_000); // polls the condition; the deadline bounds the wait
        }
    }
}
