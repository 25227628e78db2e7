package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.format.Progress;
import io.epserve.model.demo.DemoModel;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * tools/compare-llama.sh, run for real: epserve's side is the real `epserve bench` on the tiny demo
 * model; llama-bench's side is a stand-in that checks the arguments it gets and prints llama-bench's
 * JSON (the fields the script reads: n_prompt, n_gen, avg_ts), so the ratios it prints are known.
 */
class CompareLlamaScriptTest {
    private static final Path SCRIPT = Path.of(System.getProperty("epserve.root", "..")).resolve("tools/compare-llama.sh");

    /** A llama-bench that answers -p 16 -n 4 -t 1 -r 1 -o json with prefill 200 and decode 40 tokens/s. */
    private static Path fakeLlamaBench(Path dir) throws IOException {
        Path p = dir.resolve("llama-bench");
        Files.writeString(p, """
                #!/usr/bin/env bash
                [ "$*" = "-m %s -p 16 -n 4 -t 1 -r 1 -o json" ] || { echo "unexpected arguments: $*" >&2; exit 3; }
                echo '[{"build_commit": "stand-in", "n_prompt": 16, "n_gen": 0, "avg_ts": 200.0}, {"n_prompt": 0, "n_gen": 4, "avg_ts": 40.0}]'
                """.formatted(dir.resolve("model.gguf")), StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return p;
    }

    /** `epserve` as this test's class path, so the script runs the code under test, not a build of it. */
    private static Path epserveLauncher(Path dir) throws IOException {
        Path p = dir.resolve("epserve");
        Files.writeString(p, "#!/usr/bin/env bash\nexec '%s' --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xmx1g $EPSERVE_JAVA_OPTS -cp '%s' %s \"$@\"\n"
                .formatted(ProcessHandle.current().info().command().orElse("java"), System.getProperty("java.class.path"), Main.class.getName()),
                StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return p;
    }

    private record Run(int code, String out, String err) {}

    private static Run run(Path dir, List<String> args) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(args).directory(dir.toFile());
        pb.environment().put("EPSERVE", epserveLauncher(dir).toString());
        Path out = dir.resolve("out.txt");
        Path err = dir.resolve("err.txt");
        pb.redirectOutput(out.toFile()).redirectError(err.toFile());
        Process p = pb.start();
        try {
            assertThat(p.waitFor(180, TimeUnit.SECONDS)).as("compare-llama.sh finished").isTrue();
            return new Run(p.exitValue(), Files.readString(out), Files.readString(err));
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void alternatesBothEnginesAndPrintsTheRatiosOfTheMedians(@TempDir Path dir) throws Exception {
        Path tiny = DemoModel.ensure(DemoModel.TINY, Path.of("target", "demo-cache").toAbsolutePath(), Progress.NONE);
        Files.writeString(dir.resolve("model.gguf"), "stand-in: the fake llama-bench never reads it");
        Run r = run(dir, List.of("bash", SCRIPT.toString(), "--llama-bench", fakeLlamaBench(dir).toString(), "--gguf",
                dir.resolve("model.gguf").toString(), "--model", tiny.toString(), "--rounds", "2", "--threads", "1", "--prompt", "16",
                "--gen", "4", "--no-limits", "--label", "tiny"));
        assertThat(r.code()).as(r.err()).isZero();
        List<String> rounds = r.out().lines().filter(l -> l.matches("\\| [12] \\|.*")).toList();
        assertThat(rounds).hasSize(2).allSatisfy(l -> assertThat(l).startsWith("| ").contains("| 200.00 | 40.00 | "));
        // the ratio line divides epserve's medians by llama.cpp's (200 and 40 here)
        String ratio = r.out().lines().filter(l -> l.startsWith("| tiny |")).findFirst().orElseThrow();
        String[] cells = rounds.get(0).split("\\|");
        double prefill = Double.parseDouble(cells[4].trim());
        assertThat(prefill).isPositive();
        assertThat(ratio).matches("\\| tiny \\| prefill [0-9.]+ / 200\\.0 = [0-9.]+x \\| decode [0-9.]+ / 40\\.0 = [0-9.]+x \\|");
        assertThat(r.out()).contains("# llama.cpp build_commit stand-in");
        String medians = r.out().lines().filter(l -> l.startsWith("medians:")).findFirst().orElseThrow();
        double epPrefill = Double.parseDouble(medians.replaceAll(".*epserve prefill ([0-9.]+),.*", "$1"));
        // the script formats as Python does: the double's exact value, ties to even (225 / 200 -> 1.12)
        assertThat(ratio).contains("= " + new BigDecimal(epPrefill / 200.0).setScale(2, RoundingMode.HALF_EVEN) + "x");
    }

    @Test
    void refusesAMissingLlamaBenchAndAFailingOneNamingIt(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("model.gguf"), "x");
        Run missing = run(dir, List.of("bash", SCRIPT.toString(), "--llama-bench", dir.resolve("nope").toString(), "--gguf",
                dir.resolve("model.gguf").toString()));
        assertThat(missing.code()).isEqualTo(2);
        assertThat(missing.err()).contains(dir.resolve("nope") + " is not an executable llama-bench");

        // arguments the stand-in does not expect make it fail: the script stops with 1 and shows why
        Run failing = run(dir, List.of("bash", SCRIPT.toString(), "--llama-bench", fakeLlamaBench(dir).toString(), "--gguf",
                dir.resolve("model.gguf").toString(), "--prompt", "32", "--no-limits"));
        assertThat(failing.code()).isEqualTo(1);
        assertThat(failing.err()).contains("llama-bench failed").contains("unexpected arguments");

        Run usage = run(dir, List.of("bash", SCRIPT.toString(), "--rounds"));
        assertThat(usage.code()).isEqualTo(2);
    }
}
