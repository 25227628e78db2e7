package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.rpc.FrontendState;
import io.epserve.rpc.LocalWorkerProcesses;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Membership with real processes on loopback: a worker that joins ({@code epserve worker --join})
 * while requests run gets experts at the next epoch, and one sent SIGTERM drains and exits 0,
 * neither failing a request nor changing an output; a frontend restarted with the same
 * {@code --state-dir} resumes its placement epoch and its workers map nothing again.
 */
@Timeout(240)
class MembershipProcessTest {
    static final String KEY = "membership-test-key";
    static final List<String> PROMPTS = List.of("the quick brown fox", "experts join", "and leave", "a worker drains");
    static final Duration WAIT = Duration.ofSeconds(90);

    @TempDir
    Path tmp;

    static LocalWorkerProcesses workers(int n, Path model, String... extra) {
        List<String> args = new ArrayList<>(List.of("worker", "--model", model.toString()));
        args.addAll(List.of(extra));
        LocalWorkerProcesses.CommandLine cmd = LocalWorkerProcesses.sameJvm(Main.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"), args);
        return LocalWorkerProcesses.start(n, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60));
    }

    static HttpResponse<String> get(URI uri, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(60));
        if (key != null) {
            b.header("Authorization", "Bearer " + key);
        }
        return ServeCommandTest.HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** A greedy completion's text; throws naming the status when the request failed. */
    static String complete(URI base, String prompt) throws Exception {
        HttpResponse<String> r = ServeCommandTest.HTTP.send(HttpRequest.newBuilder(base.resolve("/v1/completions"))
                .timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json").header("Authorization", "Bearer " + KEY)
                .POST(HttpRequest.BodyPublishers.ofString(ServeCommandTest.JSON.writeValueAsString(Map.of("prompt", prompt,
                        "max_tokens", 6, "temperature", 0, "ignore_eos", true)))).build(), HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new AssertionError("completion of '" + prompt + "' failed: " + r.statusCode() + " " + r.body());
        }
        return ServeCommandTest.JSON.readTree(r.body()).path("choices").get(0).path("text").asText();
    }

    /** Polls GET /v1/epserve/workers until {@code done}; fails after {@link #WAIT} with the last body. */
    static JsonNode awaitWorkers(URI base, Predicate<JsonNode> done, String what) throws Exception {
        long end = System.nanoTime() + WAIT.toNanos();
        JsonNode last;
        do {
            last = ServeCommandTest.JSON.readTree(get(base.resolve("/v1/epserve/workers"), KEY).body());
            if (done.test(last)) {
                return last;
            }
            LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(100)); // poll interval; the loop checks the condition
        } while (System.nanoTime() < end);
        throw new AssertionError("not " + what + " within " + WAIT.toSeconds() + " s; last: " + last);
    }

    static JsonNode worker(JsonNode table, String address) {
        for (JsonNode w : table.path("workers")) {
            if (w.path("address").asText().equals(address)) {
                return w;
            }
        }
        return null;
    }

    ServeCommand.Running serve(ByteArrayOutputStream out, String... extra) {
        List<String> args = new ArrayList<>(List.of("--model", ServeCommandTest.tinyModel().toString(), "--port", "0",
                "--kv-memory", "8MiB", "--no-validate", "--api-key", KEY, "--worker-check-interval", "200"));
        args.addAll(List.of(extra));
        return ServeCommandTest.parse(args.toArray(String[]::new)).start(new PrintStream(out, true, StandardCharsets.UTF_8),
                new TerminalProgress(System.err, false));
    }

    @Test
    void aWorkerJoinsWhileRequestsRunAndAnotherDrainsOnSigtermWithoutAFailedRequest() throws Exception {
        Path model = ServeCommandTest.tinyModel();
        try (LocalWorkerProcesses first = workers(2, model, "--drain-timeout", "60")) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try (ServeCommand.Running r = serve(out, "--workers", first.address(0) + "," + first.address(1),
                    "--membership-listen", "127.0.0.1:0")) {
                URI base = r.base();
                Matcher mm = Pattern.compile("membership: (\\S+)").matcher(out.toString(StandardCharsets.UTF_8));
                assertThat(mm.find()).as(out.toString(StandardCharsets.UTF_8)).isTrue();
                String membership = mm.group(1);
                Map<String, String> want = new ConcurrentHashMap<>();
                for (String p : PROMPTS) {
                    want.put(p, complete(base, p));
                }
                JsonNode before = awaitWorkers(base, t -> t.path("workers").size() == 2, "two workers");
                long epoch = before.path("epoch").asLong();

                // the workers view is behind the API key; the gauge says each worker's state
                assertThat(get(base.resolve("/v1/epserve/workers"), null).statusCode()).isEqualTo(401);
                JsonNode w0 = worker(before, first.address(0));
                assertThat(w0.path("state").asText()).isEqualTo("serving");
                assertThat(w0.path("experts").asInt()).isPositive();
                for (String field : List.of("host", "rtt_ms", "load", "calls", "failures", "load_ms", "since")) {
                    assertThat(w0.has(field)).as("field %s in %s", field, w0).isTrue();
                }

                List<String> failures = new CopyOnWriteArrayList<>();
                List<String> differ = new CopyOnWriteArrayList<>();
                AtomicBoolean running = new AtomicBoolean(true);
                AtomicInteger done = new AtomicInteger();
                Thread load = Thread.ofPlatform().name("membership-test-load").start(() -> {
                    for (int i = 0; running.get(); i++) {
                        String p = PROMPTS.get(i % PROMPTS.size());
                        try {
                            String got = complete(base, p);
                            if (!got.equals(want.get(p))) {
                                differ.add(p + ": " + got + " vs " + want.get(p));
                            }
                            done.incrementAndGet();
                        } catch (Exception | AssertionError e) {
                            failures.add(String.valueOf(e.getMessage()));
                        }
                    }
                });
                try (LocalWorkerProcesses joining = workers(1, model, "--join", membership, "--host-label", "second-host")) {
                    String a2 = joining.address(0);
                    JsonNode joined = awaitWorkers(base, t -> worker(t, a2) != null && worker(t, a2).path("state").asText().equals("serving")
                            && worker(t, a2).path("experts").asInt() > 0, "the joined worker serving with experts");
                    assertThat(joined.path("epoch").asLong()).as("experts at the next epoch").isGreaterThan(epoch);
                    assertThat(worker(joined, a2).path("host").asText()).isEqualTo("second-host");
                    assertThat(worker(joined, a2).path("joined").asBoolean()).isTrue();
                    String metrics = get(base.resolve("/metrics"), KEY).body();
                    assertThat(metrics).contains("epserve_worker_state{state=\"serving\",worker=\"" + a2 + "\"} 1")
                            .contains("epserve_worker_state{state=\"dead\",worker=\"" + a2 + "\"} 0");

                    // SIGTERM: the worker drains, is placed out and released, and exits 0
                    String a1 = first.address(1);
                    long epochBefore = joined.path("epoch").asLong();
                    first.process(1).destroy();
                    assertThat(first.process(1).waitFor(WAIT.toSeconds(), TimeUnit.SECONDS)).as("drained and exited").isTrue();
                    assertThat(first.process(1).exitValue()).as("a drained worker exits 0").isZero();
                    JsonNode after = awaitWorkers(base, t -> worker(t, a1) == null, "the drained worker gone from the table");
                    assertThat(after.path("epoch").asLong()).isGreaterThan(epochBefore);
                    int served = done.get();
                    awaitWorkers(base, t -> done.get() >= served + 2, "requests served after the drain");
                } finally {
                    running.set(false);
                    load.join(TimeUnit.SECONDS.toMillis(60));
                }
                assertThat(failures).as("failed requests").isEmpty();
                assertThat(differ).as("outputs that differ from the run before the join").isEmpty();
                assertThat(done.get()).isPositive();
                for (String p : PROMPTS) {
                    assertThat(complete(base, p)).isEqualTo(want.get(p));
                }
            }
        }
    }

    @Test
    void aFrontendRestartedWithTheSameStateDirResumesItsEpochAndItsWorkersMapNothingAgain() throws Exception {
        Path model = ServeCommandTest.tinyModel();
        Path state = tmp.resolve("state");
        try (LocalWorkerProcesses ws = workers(2, model)) {
            String workersOption = ws.address(0) + "," + ws.address(1);
            String text;
            long epoch;
            String id;
            try (ServeCommand.Running r = serve(new ByteArrayOutputStream(), "--workers", workersOption, "--state-dir", state.toString())) {
                text = complete(r.base(), PROMPTS.get(0));
                // a re-placement (when the load gives another one) moves the epoch past the first
                HttpResponse<String> rb = ServeCommandTest.HTTP.send(HttpRequest.newBuilder(r.base().resolve("/v1/epserve/placement/rebalance"))
                        .header("Authorization", "Bearer " + KEY).POST(HttpRequest.BodyPublishers.noBody()).build(),
                        HttpResponse.BodyHandlers.ofString());
                assertThat(rb.statusCode()).as(rb.body()).isEqualTo(200);
                epoch = awaitWorkers(r.base(), t -> t.path("workers").size() == 2, "two workers").path("epoch").asLong();
                id = ServeCommandTest.JSON.readTree(state.resolve(FrontendState.FILE).toFile()).path("frontend_id").asText();
                assertThat(id).isNotEmpty();
            }
            JsonNode saved = ServeCommandTest.JSON.readTree(state.resolve(FrontendState.FILE).toFile());
            assertThat(saved.path("placement").path("epoch").asLong()).isEqualTo(epoch);

            ByteArrayOutputStream out = new ByteArrayOutputStream();
            try (ServeCommand.Running r = serve(out, "--workers", workersOption, "--state-dir", state.toString())) {
                JsonNode t = awaitWorkers(r.base(), x -> x.path("workers").size() == 2
                        && x.path("workers").get(0).path("rtt_ms").asDouble() >= 0
                        && x.path("workers").get(1).path("rtt_ms").asDouble() >= 0, "both workers checked");
                assertThat(t.path("epoch").asLong()).as("the same placement epoch").isEqualTo(epoch);
                for (JsonNode w : t.path("workers")) {
                    assertThat(w.path("experts").asInt()).isPositive();
                    assertThat(w.path("experts_mapped").asInt()).as("experts %s mapped again on resume", w.path("address")).isZero();
                }
                assertThat(out.toString(StandardCharsets.UTF_8)).contains("serving");
                assertThat(complete(r.base(), PROMPTS.get(0))).isEqualTo(text);
            }
            assertThat(ServeCommandTest.JSON.readTree(state.resolve(FrontendState.FILE).toFile()).path("frontend_id").asText())
                    .as("the same frontend id").isEqualTo(id);
            // no frontend holds the workers any more: SIGTERM makes them leave at once, with code 0
            ws.process(0).destroy();
            assertThat(ws.process(0).waitFor(30, TimeUnit.SECONDS)).isTrue();
            assertThat(ws.process(0).exitValue()).isZero();
        }
    }

    @Test
    void aCorruptStateFileIsAnErrorNamingIt() throws Exception {
        Path state = Files.createDirectories(tmp.resolve("corrupt"));
        Files.writeString(state.resolve(FrontendState.FILE), "{\"version\": 1, \"frontend_id\": ");
        assertThatThrownBy(() -> serve(new ByteArrayOutputStream(), "--workers", "127.0.0.1:1", "--state-dir", state.toString()))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining(state.resolve(FrontendState.FILE).toString())
                .hasMessageContaining("corrupt");
        assertThatThrownBy(() -> serve(new ByteArrayOutputStream(), "--state-dir", state.toString(), "--ep", "1"))
                .hasMessageContaining("--state-dir needs remote --workers");
    }
}
