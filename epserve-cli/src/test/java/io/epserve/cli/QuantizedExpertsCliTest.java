package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import io.epserve.model.ModelExperts;
import io.epserve.tensor.DType;
import io.epserve.rpc.WorkerServer;
import io.epserve.rpc.WorkerModel;

/** --expert-dtype on the model commands, and `bench quant` (run directly until it is registered). */
class QuantizedExpertsCliTest {

    @TempDir
    Path tmp;

    Path copy(String fixture) throws IOException {
        Path src = CliRunner.fixtures().resolve(fixture).resolve("model");
        Path dst = tmp.resolve(fixture);
        Files.createDirectories(dst);
        try (Stream<Path> s = Files.list(src)) {
            for (Path p : s.toList()) {
                Files.copy(p, dst.resolve(p.getFileName()));
            }
        }
        return dst;
    }

    @Test
    void logitsWithQuantizedExpertsWritesTheCacheNextToTheModel() throws IOException {
        Path dir = copy("olmoe");
        CliRunner.Outcome o = CliRunner.inProcess("logits", "--model", dir.toString(), "--tokens", "1,2,3", "--expert-dtype", "q8_0", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        try (Stream<Path> s = Files.list(dir.resolve(".epserve-cache"))) {
            assertThat(s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith("-q8_0.safetensors")).count()).isEqualTo(1);
        }
    }

    @Test
    void remoteWorkersHoldQuantizedExpertsAndGiveTheSameLogits() throws IOException {
        Path dir = copy("olmoe");
        CliRunner.Outcome local = CliRunner.inProcess("logits", "--model", dir.toString(), "--tokens", "1,2,3", "--expert-dtype", "q8_0",
                "--json");
        assertThat(local.exitCode()).as(local.err()).isZero();
        WorkerModel q8 = WorkerModel.of(dir).withExpertDType(DType.Q8_0);
        try (WorkerServer a = WorkerServer.builder().port(0).model(q8).experts(ModelExperts::open).build().start();
             WorkerServer b = WorkerServer.builder().port(0).model(q8).experts(ModelExperts::open).build().start()) {
            String workers = "127.0.0.1:" + a.port() + ",127.0.0.1:" + b.port();
            CliRunner.Outcome remote = CliRunner.inProcess("logits", "--model", dir.toString(), "--tokens", "1,2,3", "--expert-dtype",
                    "q8_0", "--workers", workers, "--json");
            assertThat(remote.exitCode()).as(remote.err()).isZero();
            com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
            var want = json.readTree(local.out()).get("logits");
            var got = json.readTree(remote.out()).get("logits");
            assertThat(got.size()).isEqualTo(want.size()).isEqualTo(3);
            for (int i = 0; i < want.size(); i++) {
                assertThat(got.get(i).size()).isEqualTo(want.get(i).size()).isPositive();
                for (int j = 0; j < want.get(i).size(); j++) {
                    assertThat(got.get(i).get(j).asDouble()).isCloseTo(want.get(i).get(j).asDouble(), org.assertj.core.data.Offset.offset(1e-5));
                }
            }
        }
    }

    @Test
    void badOrUnstorableExpertDtypesAreOneLineErrors() throws IOException {
        Path dir = copy("qwen2_moe");
        CliRunner.Outcome bad = CliRunner.inProcess("logits", "--model", dir.toString(), "--tokens", "1", "--expert-dtype", "int3");
        assertThat(bad.exitCode()).isEqualTo(2);
        assertThat(bad.err()).contains("--expert-dtype: unknown dtype 'int3'").doesNotContain("Exception");
        CliRunner.Outcome q4k = CliRunner.inProcess("logits", "--model", dir.toString(), "--tokens", "1", "--expert-dtype", "q4_k");
        assertThat(q4k.exitCode()).isEqualTo(2);
        assertThat(q4k.err()).contains("Q4_K").contains("not a multiple of 256").contains("experts.0");
    }

    @Test
    void benchQuantReportsAccuracyOnTheFixturesWithoutWritingIntoThem() throws IOException {
        String s = benchQuant("--fixtures", CliRunner.fixtures().toString(), "--positions", "16", "--dtypes", "q8_0,q4_k");
        assertThat(s).contains("| mixtral | bf16 (stored) |").contains("| mixtral | q8_0 |").contains("| mixtral_f32 | f32 (stored) |");
        assertThat(s).containsPattern("\\| olmoe \\| q4_k \\| — \\| refused: .*256");
        try (Stream<Path> w = Files.walk(CliRunner.fixtures())) {
            assertThat(w.filter(p -> p.getFileName().toString().equals(".epserve-cache")).toList()).isEmpty();
        }
    }

    /** --alternate decodes the stored and the quantized experts in turn and prints each round, the ratio and the bytes. */
    @Test
    void benchQuantAlternatesStoredAndQuantizedDecode() throws IOException {
        Path dir = copy("qwen2_moe");
        String s = benchQuant("--model", dir.toString(), "--alternate", "2", "--dtypes", "q8_0",
                "--prompt-tokens", "4", "--gen-tokens", "3", "--runs", "1", "--warmup", "0");
        assertThat(s).contains("quantized matvec: ").contains("load average at start: ").contains("load average at end: ");
        assertThat(s).containsPattern("\\| 1 \\| bf16 \\(stored\\) \\| [0-9.]+ \\| 1\\.00× \\| [0-9.]+ \\| [0-9.]+ \\|");
        assertThat(s).containsPattern("\\| 2 \\| q8_0 \\| [0-9.]+ \\| [0-9.]+× \\|");
        assertThat(s).containsPattern("q8_0 / bf16 \\(stored\\): decode tok/s median [0-9.]+× \\(rounds \\[[0-9.]+, [0-9.]+\\]\\); "
                + "CPU time per token median [0-9.]+× less");
        // the quantized experts read fewer bytes per token than the stored ones
        Matcher rows = Pattern.compile("\\| 1 \\| (\\S+)[^|]*\\| [0-9.]+ \\| [0-9.]+× \\| ([0-9.]+) \\|").matcher(s);
        List<Double> mb = new ArrayList<>();
        while (rows.find()) {
            mb.add(Double.parseDouble(rows.group(2)));
        }
        assertThat(mb).hasSize(2);
        assertThat(mb.get(1)).isLessThan(mb.get(0));

        CliRunner.Outcome zero = CliRunner.inProcess("bench", "quant", "--model", dir.toString(), "--alternate", "0");
        assertThat(zero.exitCode()).isEqualTo(2);
        assertThat(zero.err()).contains("--alternate needs at least 1 round");
    }

    /** Runs BenchQuantCommand in process (it writes its tables to System.out), expects exit code 0, returns stdout. */
    private static String benchQuant(String... args) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int code;
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            code = new CommandLine(new BenchQuantCommand()).execute(args);
        } finally {
            System.setOut(old);
        }
        String s = out.toString(StandardCharsets.UTF_8);
        assertThat(code).as(s).isZero();
        return s;
    }
}
