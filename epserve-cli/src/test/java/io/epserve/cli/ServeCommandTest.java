package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.Progress;
import io.epserve.model.ModelExperts;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.WorkerModel;
import io.epserve.rpc.WorkerServer;
import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code epserve serve} on the tiny demo model: options, URLs, the API it serves, shutdown. */
class ServeCommandTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** The tiny demo model, written once under target/ (not the user's cache). */
    static synchronized Path tinyModel() {
        return DemoModel.ensure(DemoModel.TINY, Path.of("target", "demo-cache").toAbsolutePath(), Progress.NONE);
    }

    static ServeCommand parse(String... args) {
        ServeCommand cmd = new ServeCommand();
        new CommandLine(cmd).parseArgs(args);
        return cmd;
    }

    static HttpResponse<String> get(URI uri) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(60)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> post(URI uri, String json) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(60)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void servesTheModelAndPrintsItsUrls() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ServeCommand cmd = parse("--model", tinyModel().toString(), "--port", "0", "--ep", "2", "--kv-memory", "8MiB",
                "--max-waiting", "16", "--no-validate");
        URI base;
        try (ServeCommand.Running r = cmd.start(new PrintStream(out, true, StandardCharsets.UTF_8),
                new TerminalProgress(System.err, false))) {
            base = r.base();
            String printed = out.toString(StandardCharsets.UTF_8);
            // the kernels are warmed by a throw-away request before the server serves
            assertThat(printed).contains("kernels warmed up in");
            // and its work is not counted as the service's
            assertThat(r.engine().stats().steps()).as("engine steps after the warm-up").isZero();
            assertThat(r.engine().stats().prefixQueriedTokens()).as("prompt tokens queried after the warm-up").isZero();
            String atStart = get(base.resolve("/metrics")).body();
            assertThat(atStart).contains("\nepserve_steps_total ");
            assertThat(metric(atStart, "epserve_steps_total")).isZero();
            assertThat(printed).contains("serving epserve-demo", "2 in-process expert workers")
                    .contains("API:     " + base.resolve("/v1"))
                    .contains("view:    " + base.resolve("/"))
                    .contains("metrics: " + base.resolve("/metrics"));
            assertThat(base.getHost()).isEqualTo("127.0.0.1");
            assertThat(get(base.resolve("/ready")).statusCode()).isEqualTo(200);
            JsonNode models = JSON.readTree(get(base.resolve("/v1/models")).body());
            assertThat(models.get("data").get(0).get("id").asText()).isEqualTo("epserve-demo");
            // the context is what 8 MiB of KV cache holds, at most the model's
            assertThat(models.get("data").get(0).get("max_model_len").asInt()).isEqualTo(r.served().maxModelLen())
                    .isLessThanOrEqualTo(4096);

            HttpResponse<String> chat = post(base.resolve("/v1/chat/completions"),
                    "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}], \"max_tokens\": 5, \"ignore_eos\": true}");
            assertThat(chat.statusCode()).as(chat.body()).isEqualTo(200);
            assertThat(JSON.readTree(chat.body()).get("usage").get("completion_tokens").asInt()).isEqualTo(5);

            String metrics = get(base.resolve("/metrics")).body();
            // the chat's prefill and its 4 decode steps, at least
            assertThat(metric(metrics, "epserve_steps_total")).isGreaterThanOrEqualTo(5);
            assertThat(metrics).contains("epserve_worker_routed_tokens_total{worker=\"inproc-0\"}",
                    "epserve_worker_routed_tokens_total{worker=\"inproc-1\"}").doesNotContain("worker=\"inproc-2\"");
            assertThat(get(base.resolve("/")).body()).contains("<title>epserve");
        }
        assertThatThrownBy(() -> get(base.resolve("/health"))).as("closed").isInstanceOf(ConnectException.class);
    }

    @Test
    void anExpertFixedCostIsANumberForTheBalancedPolicy() {
        assertThatThrownBy(() -> parse("--policy", "balanced", "--expert-fixed-cost", "-1").model.topology())
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--expert-fixed-cost must be a finite number >= 0");
        assertThatThrownBy(() -> parse("--expert-fixed-cost", "3").model.topology())
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--expert-fixed-cost needs --policy balanced");
        assertThat(parse("--policy", "balanced", "--expert-fixed-cost", "2.5").model.topology().policy())
                .isEqualTo(ExpertPlacement.Policy.BALANCED);
    }

    /** The placement endpoints and metrics: live placement with its epoch, the load window, a re-placement on demand. */
    @Test
    void placementEndpointsShowTheLoadAndRebalanceOnDemand() throws Exception {
        ServeCommand cmd = parse("--model", tinyModel().toString(), "--port", "0", "--ep", "2", "--kv-memory", "8MiB",
                "--no-validate", "--policy", "balanced", "--redundant-experts", "1", "--load-window", "64", "--expert-fixed-cost", "2");
        try (ServeCommand.Running r = cmd.start(new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new TerminalProgress(System.err, false))) {
            URI base = r.base();
            HttpResponse<String> chat = post(base.resolve("/v1/completions"),
                    "{\"prompt\": \"hello there\", \"max_tokens\": 8, \"ignore_eos\": true}");
            assertThat(chat.statusCode()).as(chat.body()).isEqualTo(200);
            JsonNode load = JSON.readTree(get(base.resolve("/v1/epserve/load")).body());
            assertThat(load.get("window_steps").asInt()).isEqualTo(64);
            long routed = 0;
            for (JsonNode l : load.get("layers")) {
                assertThat(l.get("tokens")).hasSize(8);
                for (JsonNode n : l.get("tokens")) {
                    routed += n.asLong();
                }
            }
            assertThat(routed).isPositive();
            JsonNode placement = JSON.readTree(get(base.resolve("/v1/epserve/placement")).body());
            assertThat(placement.get("epoch").asLong()).isZero();
            assertThat(placement.get("policy").asText()).isEqualTo("balanced");
            assertThat(placement.get("workers")).hasSize(2);
            assertThat(placement.get("layers").get(0).get("replicas")).hasSize(8);
            // --expert-fixed-cost 2: the workers' cost balancedness beside the token figure, one per sparse layer
            assertThat(placement.get("expert_fixed_cost").asDouble()).isEqualTo(2.0);
            assertThat(placement.get("cost_balancedness")).hasSize(placement.get("layers").size());
            assertThat(placement.get("cost_balancedness").get(0).asDouble()).isBetween(0.0, 1.0);
            assertThat(get(base.resolve("/v1/epserve/placement/rebalance")).statusCode()).isEqualTo(405);
            HttpResponse<String> rb = post(base.resolve("/v1/epserve/placement/rebalance"), "");
            assertThat(rb.statusCode()).as(rb.body()).isEqualTo(200);
            JsonNode outcome = JSON.readTree(rb.body());
            long epoch = outcome.get("epoch").asLong();
            assertThat(epoch).isEqualTo(outcome.get("changed").asBoolean() ? 1 : 0);
            assertThat(JSON.readTree(get(base.resolve("/v1/epserve/placement")).body()).get("epoch").asLong()).isEqualTo(epoch);
            // generation still works on the new epoch
            assertThat(post(base.resolve("/v1/completions"), "{\"prompt\": \"hi\", \"max_tokens\": 3, \"ignore_eos\": true}")
                    .statusCode()).isEqualTo(200);
            String metrics = get(base.resolve("/metrics")).body();
            assertThat(metrics).contains("epserve_placement_epoch " + epoch + ".0", "epserve_placement_balancedness{layer=\"0\"}",
                    "epserve_placement_balancedness{layer=\"1\"}", "epserve_rebalances_total " + epoch + ".0",
                    "epserve_rebalance_duration_seconds_count " + epoch);
        }
    }

    /** Experts on two gRPC expert workers: the same API, and the transport counters in /metrics. */
    @Test
    void servesWithRemoteExpertWorkersAndExportsTheirCounters() throws Exception {
        WorkerModel model = WorkerModel.of(tinyModel());
        try (WorkerServer w0 = WorkerServer.builder().host("127.0.0.1").port(0).model(model).experts(ModelExperts::open).build().start();
             WorkerServer w1 = WorkerServer.builder().host("127.0.0.1").port(0).model(model).experts(ModelExperts::open).build().start()) {
            String a0 = "127.0.0.1:" + w0.port();
            String a1 = "127.0.0.1:" + w1.port();
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ServeCommand cmd = parse("--model", tinyModel().toString(), "--port", "0", "--workers", a0 + "," + a1,
                    "--kv-memory", "8MiB", "--no-validate");
            try (ServeCommand.Running r = cmd.start(new PrintStream(out, true, StandardCharsets.UTF_8),
                    new TerminalProgress(System.err, false))) {
                assertThat(out.toString(StandardCharsets.UTF_8)).contains("2 remote expert workers");
                HttpResponse<String> c = post(r.base().resolve("/v1/completions"),
                        "{\"prompt\": \"remote experts\", \"max_tokens\": 4, \"ignore_eos\": true}");
                assertThat(c.statusCode()).as(c.body()).isEqualTo(200);
                String metrics = get(r.base().resolve("/metrics")).body();
                for (String w : List.of(a0, a1)) {
                    assertThat(metric(metrics, "epserve_worker_calls_total{worker=\"" + w + "\"}")).as(w).isPositive();
                    assertThat(metric(metrics, "epserve_worker_sent_bytes_total{worker=\"" + w + "\"}")).isPositive();
                    assertThat(metric(metrics, "epserve_worker_received_bytes_total{worker=\"" + w + "\"}")).isPositive();
                    assertThat(metric(metrics, "epserve_worker_round_trip_seconds_total{worker=\"" + w + "\"}")).isPositive();
                    assertThat(metric(metrics, "epserve_worker_routed_tokens_total{worker=\"" + w + "\"}")).isPositive();
                }
            }
        }
    }

    static double metric(String text, String sample) {
        for (String line : text.split("\n")) {
            if (line.startsWith(sample + " ")) {
                return Double.parseDouble(line.substring(sample.length() + 1).trim());
            }
        }
        return 0;
    }

    @Test
    void badOptionsAreUsageErrors() {
        String model = tinyModel().toString();
        PrintStream sink = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        TerminalProgress quiet = new TerminalProgress(System.err, false);
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--ep", "9").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--ep 9 is more than the model's 8 routed experts per layer");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--kv-memory", "lots").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--kv-memory");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--max-waiting", "-1").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--max-waiting");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--max-model-len", "100000").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("context length 4096");
        assertThatThrownBy(() -> parse("--model", model, "--port", "70000").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--port must be in [0, 65535]");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--header-timeout", "0").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--header-timeout must be a number of seconds > 0");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--idle-timeout", "NaN").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--idle-timeout");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--max-connections", "0").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--max-connections must be at least 1");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--max-header-bytes", "10").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--max-header-bytes");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--metrics-listen", "localhost:http").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--metrics-listen");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--api-key", "two words").start(sink, quiet))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--api-key");
        assertThatThrownBy(() -> parse("--model", model, "--port", "0", "--api-key-file", "/nonexistent/keys").start(sink, quiet))
                .isInstanceOf(UncheckedIOException.class).hasMessageContaining("/nonexistent/keys");
    }

    /** --api-key-file guards the API; --metrics-listen moves metrics and the live view to their own port. */
    @Test
    void apiKeysAndAMetricsListener() throws Exception {
        Path keys = Files.createTempFile("epserve-keys", ".txt");
        try {
            Files.writeString(keys, "# the test's key\n\nsk-serve-test\n");
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            ServeCommand cmd = parse("--model", tinyModel().toString(), "--port", "0", "--ep", "2", "--kv-memory", "8MiB",
                    "--no-validate", "--api-key-file", keys.toString(), "--metrics-listen", "127.0.0.1:0");
            try (ServeCommand.Running r = cmd.start(new PrintStream(out, true, StandardCharsets.UTF_8),
                    new TerminalProgress(System.err, false))) {
                URI ops = r.server().metricsUri();
                assertThat(out.toString(StandardCharsets.UTF_8)).contains("metrics: " + ops.resolve("/metrics"))
                        .contains("API keys: 1 accepted");
                assertThat(get(r.base().resolve("/v1/models")).statusCode()).isEqualTo(401);
                HttpResponse<String> models = HTTP.send(HttpRequest.newBuilder(r.base().resolve("/v1/models"))
                        .header("Authorization", "Bearer sk-serve-test").build(), HttpResponse.BodyHandlers.ofString());
                assertThat(models.statusCode()).isEqualTo(200);
                assertThat(get(ops.resolve("/metrics")).statusCode()).isEqualTo(200);
                assertThat(get(r.base().resolve("/health")).statusCode()).isEqualTo(200);
            }
        } finally {
            Files.deleteIfExists(keys);
        }
    }

    @Test
    void aBusyPortFailsBeforeTheModelLoads() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            PrintStream sink = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
            assertThatThrownBy(() -> parse("--model", "/nonexistent", "--port", Integer.toString(taken.getLocalPort()))
                    .start(sink, new TerminalProgress(System.err, false)))
                    .isInstanceOf(UncheckedIOException.class).hasMessageContaining("cannot listen on 127.0.0.1:" + taken.getLocalPort());
        }
    }

    /** Runs `serve` as a real process (the way a user runs it), then stops it with SIGTERM. */
    public static final class Launch {
        public static void main(String[] args) {
            System.exit(new CommandLine(new ServeCommand()).execute(args));
        }
    }

    @Test
    void runsUntilTerminatedThenShutsDownGracefully() throws Exception {
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx1g",
                "-cp", System.getProperty("java.class.path"), Launch.class.getName(),
                "--model", tinyModel().toString(), "--port", "0", "--kv-memory", "8MiB", "--drain", "2"));
        Path errFile = Files.createTempFile("epserve-serve-err", ".txt");
        Process p = new ProcessBuilder(cmd).redirectError(errFile.toFile()).start();
        try {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
            URI api = null;
            for (String line; api == null && (line = out.readLine()) != null; ) {
                if (line.strip().startsWith("API:")) {
                    api = URI.create(line.strip().substring("API:".length()).strip());
                }
            }
            assertThat(api).as("the API URL line").isNotNull();
            assertThat(get(api.resolve("/health")).statusCode()).isEqualTo(200);
            HttpResponse<String> c = post(api.resolve("/v1/completions"), "{\"prompt\": \"hi\", \"max_tokens\": 3}");
            assertThat(c.statusCode()).as(c.body()).isEqualTo(200);
            p.destroy(); // SIGTERM
            assertThat(p.waitFor(60, TimeUnit.SECONDS)).as("exits after SIGTERM").isTrue();
            String err = Files.readString(errFile);
            assertThat(err).contains("shutting down").doesNotContain("Exception");
            assertThat(p.exitValue()).isEqualTo(143); // 128 + SIGTERM, after the shutdown hook ran
        } finally {
            p.destroyForcibly();
            Files.deleteIfExists(errFile);
        }
    }
}
