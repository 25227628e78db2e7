package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The CLI as a user meets it: real processes, exit codes, one-line errors, the demo model out of the box. */
class CliProcessTest {
    @TempDir
    Path tmp;

    private void assertCleanError(CliRunner.Outcome o, String... mustContain) {
        assertThat(o.exitCode()).as("exit code; stderr: %s", o.err()).isEqualTo(2);
        String[] lines = o.err().lines().filter(l -> !l.startsWith("WARNING: Using incubator modules")).toArray(String[]::new);
        assertThat(lines).as("stderr").hasSize(1);
        assertThat(lines[0]).startsWith("epserve: error: ");
        for (String s : mustContain) {
            assertThat(lines[0]).contains(s);
        }
        assertThat(o.err()).doesNotContain("\tat ").doesNotContain("Exception in thread");
    }

    @Test
    void generateWithNoModelRunsTheDemoModel() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()),
                "generate", "--demo", "tiny", "--max-tokens", "12", "--seed", "3");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out().strip()).isNotEmpty();
        assertThat(o.err()).containsPattern("prompt: \\d+ tokens, [0-9.]+ tokens/s \\| generation: \\d+ tokens, [0-9.]+ tokens/s");
        assertThat(tmp.resolve("demo-mixtral-tiny-v1").resolve("model.safetensors")).exists();
        assertThat(tmp.resolve("demo-mixtral-tiny-v1").resolve(".complete")).exists();
        // the same seed gives the same text, from the cached demo model
        CliRunner.Outcome again = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()),
                "generate", "--demo", "tiny", "--max-tokens", "12", "--seed", "3");
        assertThat(again.out()).isEqualTo(o.out());
    }

    @Test
    void benchPrefixComparesTimeToFirstTokenWithAndWithoutThePrefixCache() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()), "bench", "prefix", "--demo", "tiny",
                "--system-tokens", "96", "--user-tokens", "4", "--turns", "3", "--warmup", "1", "--gen-tokens", "3");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).containsPattern("TTFT without prefix cache: [0-9.]+ ms median")
                .containsPattern("TTFT with prefix cache: +[0-9.]+ ms median")
                .contains("same greedy tokens: yes")
                // 3 of the 4 turns reuse the 96-token system prompt's 6 full blocks of 16: 288 of 400 prompt tokens
                .contains("cache hit rate 72.0% of prompt tokens");
    }

    /** The launcher's ahead-of-time cache is made from this run: it must serve, stream and generate, and exit 0. */
    @Test
    void theAotTrainingRunServesAndGeneratesOnTheTinyDemo() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()), "aot-train");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.err()).containsPattern("generation: 32 tokens");
        assertThat(tmp.resolve("demo-mixtral-tiny-v1").resolve(".complete")).exists();
    }

    @Test
    void benchEpComparesSingleProcessWithWorkerProcesses() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()), "bench", "ep", "--demo", "tiny",
                "--no-validate", "--runs", "1", "--prompt-tokens", "4", "--gen-tokens", "3", "--batch", "2", "--warmup-seconds", "0.5");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("median of 1 runs after 0.5 s of warm-up");
        String num = "[0-9]+\\.[0-9]";
        for (String overlap : new String[] {"off", "on"}) {
            assertThat(o.out()).containsPattern("single process +" + overlap + " +" + num + " +" + num + " +" + num + " +-");
            // wire bytes per token: the tiny demo's hidden states (F32) to and from the workers
            assertThat(o.out()).containsPattern("2 workers, loopback +" + overlap + " +" + num + " +" + num + " +" + num + " +[1-9][0-9]+");
            assertThat(o.out()).containsPattern("2 workers, overlap " + overlap + ": per call [0-9]+ µs computing, -?[0-9]+ µs on the way");
            assertThat(o.out()).containsPattern("2 workers, overlap " + overlap + ", batched decode \\(2 sequences\\): per call [0-9]+ µs "
                    + "computing, -?[0-9]+ µs on the way");
            assertThat(o.out()).containsPattern("single process, overlap " + overlap + ": batched decode t/s per run \\[" + num + "\\]");
            assertThat(o.out()).containsPattern("2 workers, loopback, overlap " + overlap + ": batched decode t/s per run \\[" + num + "\\]");
        }
        assertThat(o.out()).containsPattern("decode with 2 worker processes / single process: [0-9]+\\.[0-9]{2}");
        for (String overlap : new String[] {"off", "on"}) {
            assertThat(o.out()).containsPattern("2 worker processes, overlap " + overlap + " / single process: prefill [0-9]+\\.[0-9]{2}, "
                    + "decode [0-9]+\\.[0-9]{2}, batched decode \\(2 sequences\\) [0-9]+\\.[0-9]{2}");
        }
    }

    @Test
    void generateJsonOnDemoHasTheDocumentedFields() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of("EPSERVE_CACHE", tmp.toString()),
                "generate", "--demo", "tiny", "--prompt", "héllo wörld", "--max-tokens", "5", "--temperature", "0", "--ignore-eos", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        JsonNode j = new ObjectMapper().readTree(o.out());
        assertThat(j.get("tokens").size()).isPositive();
        assertThat(j.get("generated").size()).isEqualTo(5);
        assertThat(j.get("text").isTextual()).isTrue();
        assertThat(j.get("prefill_tokens_per_s").asDouble()).isPositive();
        assertThat(j.get("decode_tokens_per_s").asDouble()).isPositive();
    }

    @Test
    void missingModelDirectory() throws Exception {
        assertCleanError(CliRunner.process(Map.of(), "logits", "--model", tmp.resolve("nope").toString(), "--tokens", "1"), "nope");
    }

    @Test
    void truncatedCheckpoint() throws Exception {
        Path model = copyFixture("mixtral");
        Path st = model.resolve("model.safetensors");
        byte[] b = Files.readAllBytes(st);
        Files.write(st, Arrays.copyOf(b, b.length / 2));
        assertCleanError(CliRunner.process(Map.of(), "logits", "--model", model.toString(), "--tokens", "1,2"),
                "model.safetensors", "truncated");
    }

    @Test
    void unknownArchitecture() throws Exception {
        Path model = copyFixture("mixtral");
        Files.writeString(model.resolve("config.json"),
                Files.readString(model.resolve("config.json")).replace("MixtralForCausalLM", "GPT2LMHeadModel"));
        assertCleanError(CliRunner.process(Map.of(), "generate", "--model", model.toString(), "--tokens", "1,2"),
                "config.json", "GPT2LMHeadModel", "supported:");
    }

    @Test
    void tokenOutsideTheVocabulary() throws Exception {
        assertCleanError(CliRunner.process(Map.of(), "logits", "--model", CliRunner.fixtures().resolve("olmoe/model").toString(),
                "--tokens", "1,999"), "999");
    }

    @Test
    void badOptionValue() throws Exception {
        CliRunner.Outcome o = CliRunner.process(Map.of(), "generate", "--model", CliRunner.fixtures().resolve("olmoe/model").toString(),
                "--tokens", "1", "--temperature", "-1");
        assertCleanError(o, "temperature");
    }

    @Test
    void everyCommandHasHelp() throws Exception {
        for (String cmd : new String[] {"serve", "generate", "logits", "worker", "cluster", "loadgen", "bench", "plan"}) {
            CliRunner.Outcome o = CliRunner.inProcess(cmd, "--help");
            assertThat(o.exitCode()).isZero();
            assertThat(o.out()).contains("Usage: epserve " + cmd);
        }
        CliRunner.Outcome top = CliRunner.inProcess("--help");
        assertThat(top.out()).contains("serve").contains("generate").contains("logits").contains("worker").contains("cluster")
                .contains("loadgen").contains("bench").contains("plan").contains("demo model");
        CliRunner.Outcome ep = CliRunner.inProcess("bench", "ep", "--help");
        assertThat(ep.exitCode()).isZero();
        assertThat(ep.out()).contains("Usage: epserve bench ep").contains("--warmup-seconds");
        CliRunner.Outcome badWarmup = CliRunner.inProcess("bench", "ep", "--demo", "tiny", "--warmup-seconds", "-1");
        assertThat(badWarmup.exitCode()).isEqualTo(2);
        assertThat(badWarmup.err()).contains("--warmup-seconds >= 0");
    }

    private Path copyFixture(String name) throws Exception {
        Path src = CliRunner.fixtures().resolve(name).resolve("model");
        Path dst = tmp.resolve(name);
        Files.createDirectories(dst);
        try (var s = Files.list(src)) {
            for (Path p : s.toList()) {
                Files.copy(p, dst.resolve(p.getFileName()));
            }
        }
        return dst;
    }
}
