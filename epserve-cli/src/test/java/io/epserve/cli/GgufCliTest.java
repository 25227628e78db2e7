package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `--model FILE.gguf` through the commands a user runs. */
class GgufCliTest {
    static final ObjectMapper JSON = new ObjectMapper();

    /** Links to the GGUF fixtures: the tensors converted from them are cached beside the links, not in the shared fixtures. */
    @TempDir
    static Path links;

    static synchronized Path gguf(String file) {
        Path shared = CliRunner.fixtures().resolve("gguf").resolve(file);
        Path link = links.resolve(file);
        try {
            return !file.endsWith(".gguf") ? shared
                    : Files.exists(link, LinkOption.NOFOLLOW_LINKS) ? link : Files.createSymbolicLink(link, shared);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Test
    void generateOnTheQ8_0FileGivesLlamaCppsGreedyTokens() throws Exception {
        JsonNode ref = JSON.readTree(gguf("reference.json").toFile());
        for (JsonNode run : ref.get("files").get("synth-moe-q8_0.gguf").get("llama_cpp")) {
            CliRunner.Outcome o = CliRunner.inProcess("generate", "--model", gguf("synth-moe-q8_0.gguf").toString(),
                    "--tokens", CliFixtureTest.ids(run.get("prompt")), "--temperature", "0", "--ignore-eos",
                    "--max-tokens", String.valueOf(run.get("generated").size()), "--json");
            assertThat(o.exitCode()).as(o.err()).isZero();
            assertThat(JSON.readTree(o.out()).get("generated")).isEqualTo(run.get("generated"));
        }
    }

    @Test
    void generateFromTextUsesTheTokenizerInTheMetadata() {
        CliRunner.Outcome o = CliRunner.inProcess("generate", "--model", gguf("synth-moe-q4_k_m.gguf").toString(),
                "--prompt", "hello world", "--temperature", "0", "--max-tokens", "4", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        JsonNode got;
        try {
            got = JSON.readTree(o.out());
        } catch (Exception e) {
            throw new AssertionError(o.out(), e);
        }
        // bos first (tokenizer.ggml.add_bos_token), then pieces of the sentencepiece vocabulary
        assertThat(got.get("tokens").get(0).asInt()).isEqualTo(1);
        assertThat(got.get("tokens").size()).isGreaterThan(2);
    }

    @Test
    void benchRunsOnAGgufFile() {
        CliRunner.Outcome o = CliRunner.inProcess("bench", "--model", gguf("synth-moe-q4_k_m.gguf").toString(),
                "--prompt-tokens", "16", "--gen-tokens", "4", "--runs", "1", "--warmup", "0");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("synth-moe-q4_k_m.gguf (MixtralForCausalLM, 2 layers, 4 experts top-2)")
                .contains("prefill:").contains("decode:");
    }

    @Test
    void planReadsTheConfigFromTheMetadata() {
        CliRunner.Outcome o = CliRunner.inProcess("plan", "--model", gguf("synth-moe-q6_k.gguf").toString(), "--workers", "2",
                "--memory-per-worker", "1GiB");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("MixtralForCausalLM: 2 layers (2 sparse), hidden 256, vocab 2048, 4 routed experts (top-2)");
    }

    @Test
    void aCorruptFileIsOneLineNamingTheTensor(@TempDir Path tmp) throws Exception {
        byte[] b = Files.readAllBytes(gguf("synth-moe-q8_0.gguf"));
        Path bad = tmp.resolve("cut.gguf");
        Files.write(bad, Arrays.copyOf(b, b.length / 2));
        CliRunner.Outcome o = CliRunner.inProcess("generate", "--model", bad.toString(), "--tokens", "1,2", "--max-tokens", "1");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err().strip()).contains("cut.gguf: tensor '").contains("truncated file").doesNotContain("\n\tat ");
    }

    @Test
    void aMissingFileIsAUsageError(@TempDir Path tmp) {
        CliRunner.Outcome o = CliRunner.inProcess("generate", "--model", tmp.resolve("nope.gguf").toString(), "--tokens", "1");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("no such directory or .gguf file");
    }
}
