package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code epserve loadgen} against a real {@code epserve serve} on the tiny demo model. */
class LoadgenCommandTest {
    static ServeCommand.Running server;

    @BeforeAll
    static void start() {
        ServeCommand cmd = ServeCommandTest.parse("--model", ServeCommandTest.tinyModel().toString(), "--port", "0",
                "--kv-memory", "16MiB", "--no-validate");
        server = cmd.start(new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8),
                new TerminalProgress(System.err, false));
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    static LoadgenCommand parse(String... args) {
        LoadgenCommand cmd = new LoadgenCommand();
        new CommandLine(cmd).parseArgs(args);
        return cmd;
    }

    static double metric(String sample) throws Exception {
        String text = ServeCommandTest.get(server.base().resolve("/metrics")).body();
        for (String line : text.split("\n")) {
            if (line.startsWith(sample + " ")) {
                return Double.parseDouble(line.substring(sample.length() + 1).trim());
            }
        }
        return 0;
    }

    @Test
    void printsThroughputAndLatencyPercentiles() throws Exception {
        double promptBefore = metric("epserve_prompt_tokens_total");
        double generatedBefore = metric("epserve_generation_tokens_total");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        LoadgenCommand.Report r = parse("--url", server.base() + "/v1", "--concurrency", "4", "--requests", "12",
                "--prompt-tokens", "16", "--max-tokens", "8")
                .run(new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8), true);
        assertThat(r.ok()).isEqualTo(12);
        assertThat(r.failures()).isEmpty();
        assertThat(r.outputTokens()).isEqualTo(12 * 8);
        assertThat(r.ttft().getTotalCount()).isEqualTo(12);
        assertThat(r.tpot().getTotalCount()).isEqualTo(12);
        assertThat(r.e2e().getTotalCount()).isEqualTo(12);
        assertThat(r.e2e().getValueAtPercentile(50)).isGreaterThanOrEqualTo(r.ttft().getValueAtPercentile(50));
        String printed = out.toString(StandardCharsets.UTF_8);
        assertThat(printed).contains("12 requests (12 ok, 0 failed), concurrency 4, prompt 16 tokens, 8 output tokens each")
                .containsPattern("requests/s +[0-9.]+")
                .containsPattern("output tokens/s +[0-9.]+")
                .containsPattern("latency \\(ms\\) +p50 +p90 +p99 +mean")
                .containsPattern("TTFT +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+")
                .containsPattern("TPOT +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+")
                .containsPattern("end-to-end +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+");
        assertThat(err.toString(StandardCharsets.UTF_8)).contains("] 12/12 requests");
        // exactly what was asked for reached the engine: token-id prompts (no BOS added), ignore_eos
        assertThat(metric("epserve_prompt_tokens_total") - promptBefore).isEqualTo(12 * 16);
        assertThat(metric("epserve_generation_tokens_total") - generatedBefore).isEqualTo(12 * 8);
    }

    @Test
    void jsonOutput() throws Exception {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        parse("--url", server.base().toString(), "--concurrency", "2", "--requests", "3", "--prompt-tokens", "4",
                "--max-tokens", "3", "--json").run(new PrintStream(out, true, StandardCharsets.UTF_8), System.err, false);
        JsonNode j = new ObjectMapper().readTree(out.toString(StandardCharsets.UTF_8));
        assertThat(j.get("ok").asInt()).isEqualTo(3);
        assertThat(j.get("model").asText()).isEqualTo("epserve-demo");
        assertThat(j.get("output_tokens").asInt()).isEqualTo(9);
        assertThat(j.get("output_tokens_per_s").asDouble()).isPositive();
        for (String h : new String[] {"ttft_ms", "tpot_ms", "e2e_ms"}) {
            assertThat(j.get(h).get("p50").asDouble()).as(h).isPositive();
            assertThat(j.get(h).get("p99").asDouble()).isGreaterThanOrEqualTo(j.get(h).get("p50").asDouble());
        }
    }

    /** Requests the server refuses are failures, grouped by status and error message, and fail the run. */
    @Test
    void failedRequestsAreGroupedAndFailTheRun() throws Exception {
        PrintStream sink = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        assertThatThrownBy(() -> parse("--url", server.base().toString(), "--requests", "3", "--prompt-tokens", "4",
                "--max-tokens", "100000000").run(sink, sink, false))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("all 3 requests failed")
                .hasMessageContaining("HTTP 400: ").hasMessageContaining("=3");

        LoadgenCommand cmd = parse("--requests", "10");
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        Map<String, Integer> failures = new TreeMap<>(Map.of("HTTP 429: busy", 2, "timed out", 1));
        int code = cmd.exitCode(new LoadgenCommand.Report(7, failures, 1.0, 70, null, null, null),
                new PrintStream(err, true, StandardCharsets.UTF_8));
        assertThat(code).as("some requests failed").isEqualTo(1);
        assertThat(err.toString(StandardCharsets.UTF_8)).contains("3 of 10 requests failed")
                .containsPattern("2 +HTTP 429: busy").containsPattern("1 +timed out");
        assertThat(cmd.exitCode(new LoadgenCommand.Report(10, Map.of(), 1.0, 70, null, null, null), sink)).isZero();
    }

    @Test
    void promptsDrawFromTheVocabularyTheServerStates() throws Exception {
        ObjectMapper json = new ObjectMapper();
        assertThat(LoadgenCommand.vocab(json.readTree("{\"id\": \"epserve-demo\", \"vocab_size\": 32000}"))).isEqualTo(32000);
        // llama-server's card: {"id": ..., "meta": {"n_vocab": ...}}
        assertThat(LoadgenCommand.vocab(json.readTree("{\"id\": \"m.gguf\", \"meta\": {\"n_vocab\": 151936}}"))).isEqualTo(151936);
        assertThat(LoadgenCommand.vocab(json.readTree("{\"id\": \"other\"}"))).isEqualTo(256);
        assertThat(LoadgenCommand.vocab(json.readTree("{\"id\": \"bad\", \"vocab_size\": -3}"))).isEqualTo(256);
    }

    @Test
    void unreachableServerAndBadOptions() {
        PrintStream sink = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
        assertThatThrownBy(() -> parse("--url", "http://127.0.0.1:1", "--requests", "1").run(sink, sink, false))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("cannot reach");
        assertThatThrownBy(() -> parse("--url", "localhost:8080").run(sink, sink, false))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("http://");
        assertThatThrownBy(() -> parse("--concurrency", "0").run(sink, sink, false))
                .isInstanceOf(Main.UsageError.class).hasMessageContaining("--concurrency");
    }
}
