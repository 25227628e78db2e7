package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * tools/calibrate.sh --relayout, run for real on `bench ep` outputs written here: the points it
 * hands to `epserve simulate --calibrate` (a stand-in launcher prints them back) pool repeated
 * measurements of one configuration as the script documents.
 */
class CalibrateScriptTest {
    private static final Path SCRIPT = Path.of(System.getProperty("epserve.root", "..")).resolve("tools/calibrate.sh");

    /** One `bench ep` output: the single process and one worker configuration, overlap off and on. */
    private static String benchEp(String label, double[] single, double[] workers) {
        return """
                model: demo; prompt 32, decode 16 tokens, batched decode 16 sequences; median of 5 runs
                experts                overlap   prefill t/s   decode t/s batch decode t/s wire bytes/token
                single process         off             100.0         %.1f             %.1f                -
                single process         on              100.0         %.1f             %.1f                -
                %-22s off              90.0         %.1f             %.1f            92432
                %-22s on               90.0         %.1f             %.1f            92444
                """.formatted(single[0], single[1], single[2], single[3], label, workers[0], workers[1], label, workers[2], workers[3]);
    }

    private static Path standInEpserve(Path dir) throws IOException {
        Path p = dir.resolve("epserve");
        // simulate --calibrate FILE ...: print FILE, so the test reads the points the script laid out;
        // simulate --calibrate-runs DIRS ...: print DIRS
        Files.writeString(p, """
                #!/usr/bin/env bash
                case "$1 $2" in
                  "simulate --calibrate") cat "$3" ;;
                  "simulate --calibrate-runs") echo "runs: $3" ;;
                  *) echo "unexpected: $*" >&2; exit 3 ;;
                esac
                """, StandardCharsets.UTF_8);
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return p;
    }

    @Test
    void relayoutPoolsRepeatedMeasurementsWithoutMeasuringAgain(@TempDir Path dir) throws Exception {
        Path out = Files.createDirectories(dir.resolve("run"));
        Files.writeString(out.resolve("measured.txt"), "# measured at a stated time\n");
        Files.writeString(out.resolve("cost.json"), "{}");
        // single process batch 1 over the four files (off and on rows): 40 41 42 43 44 45 46 47 -> median 43.5
        Files.writeString(out.resolve("w1.txt"), benchEp("1 workers, loopback", new double[] {40, 90, 41, 80}, new double[] {20, 50, 24, 56}));
        Files.writeString(out.resolve("w2.txt"), benchEp("2 workers, loopback", new double[] {42, 96, 43, 82}, new double[] {26, 88, 27, 70}));
        Files.writeString(out.resolve("w4.txt"), benchEp("4 workers, loopback", new double[] {44, 94, 45, 84}, new double[] {19, 74, 22, 64}));
        Files.writeString(out.resolve("w2r.txt"), benchEp("2 workers, loopback", new double[] {46, 98, 47, 86}, new double[] {27, 77, 28, 62}));
        Files.writeString(out.resolve("ns-50us-10000mbit.txt"),
                benchEp("2 workers, remote", new double[] {48, 100, 49, 88}, new double[] {21, 84, 25, 79}));
        Files.writeString(out.resolve("ns-50us-10000mbit.applied"), "0\n");
        Files.writeString(out.resolve("balance.txt"), """
                layer: 64 experts top-8, hidden 2048, expert FFN 1024, BF16 random weights; 512 tokens a step; Zipf s = 1.2 (hot experts shuffled, seed 1)
                2 worker processes, 1 kernel thread(s) each; 20 warm-up + 60 measured steps per placement
                model directory: /cache/bench-balance-64x2048x1024-top8-v1
                cost: balancing pairs alone
                placement      balancedness  cost balanced       tokens/s  p50 step ms  p99 step ms
                contiguous            0.706          0.706          487.2      1050.00      1182.00
                balanced              1.000          1.000          679.7       750.00       790.00
                worker compute per step, ms (contiguous -> balanced): 127.0.0.1:1 1012.1 -> 700.6 127.0.0.1:2 492.9 -> 702.9
                """);

        ProcessBuilder pb = new ProcessBuilder("bash", SCRIPT.toString(), "--relayout", out.toString()).directory(dir.toFile());
        pb.environment().put("EPSERVE", standInEpserve(dir).toString());
        pb.redirectOutput(dir.resolve("out.txt").toFile()).redirectError(dir.resolve("err.txt").toFile());
        Process p = pb.start();
        try {
            assertThat(p.waitFor(60, TimeUnit.SECONDS)).as("calibrate.sh finished").isTrue();
        } finally {
            p.destroyForcibly();
        }
        assertThat(p.exitValue()).as(Files.readString(dir.resolve("err.txt"))).isZero();
        List<String> lines = Files.readAllLines(out.resolve("points.tsv"));
        assertThat(lines.get(0)).isEqualTo("# measured at a stated time");
        Map<String, String> measured = lines.stream().skip(1).map(l -> l.split("\t"))
                .collect(Collectors.toMap(f -> f[0], f -> f[1] + " " + f[3] + " " + f[10]));
        assertThat(measured).containsExactlyInAnyOrderEntriesOf(Map.ofEntries(
                // single process: every file's rows, batch 1 both overlap settings, batch 16 each setting apart
                Map.entry("single process, batch 1", "fit-frontend 0 44.5"),
                Map.entry("single process, batch 16", "fit-frontend 0 96.0"),
                Map.entry("single process, batch 16, overlap on", "predict 0 84.0"),
                // a batch-1 worker point is the mean of its overlap-off and -on rows
                Map.entry("2 workers, loopback, contiguous, batch 1", "fit-message 2 26.5"),
                Map.entry("2 workers, loopback, contiguous, batch 16, overlap on", "fit-message 2 70.0"),
                Map.entry("2 workers, loopback, contiguous, batch 16, overlap off", "predict 2 88.0"),
                Map.entry("1 worker, loopback, batch 1", "predict 1 22.0"),
                Map.entry("1 worker, loopback, batch 16, overlap off", "predict 1 50.0"),
                Map.entry("1 worker, loopback, batch 16, overlap on", "predict 1 56.0"),
                Map.entry("4 workers, loopback, contiguous, batch 1", "predict 4 20.5"),
                Map.entry("4 workers, loopback, contiguous, batch 16, overlap off", "predict 4 74.0"),
                Map.entry("4 workers, loopback, contiguous, batch 16, overlap on", "predict 4 64.0"),
                Map.entry("2 workers, loopback, replicated, batch 1", "predict 2 27.5"),
                Map.entry("2 workers, loopback, replicated, batch 16, overlap off", "predict 2 77.0"),
                Map.entry("2 workers, loopback, replicated, batch 16, overlap on", "predict 2 62.0"),
                Map.entry("2 workers, namespace hosts, 50 µs (0 applied) / 10000 Mbit, batch 1", "predict 2 23.0"),
                Map.entry("2 workers, namespace hosts, 50 µs (0 applied) / 10000 Mbit, batch 16, overlap off", "predict 2 84.0"),
                Map.entry("2 workers, namespace hosts, 50 µs (0 applied) / 10000 Mbit, batch 16, overlap on", "predict 2 79.0"),
                // skewed against balanced: bench balance's two rows, the load it wrote replayed on its layer's model
                Map.entry("2 workers, loopback, one expert layer, 512 tokens a step, Zipf 1.2 load, contiguous", "predict 2 487.2"),
                Map.entry("2 workers, loopback, one expert layer, 512 tokens a step, Zipf 1.2 load, balanced (1 redundant slot)",
                        "predict 2 679.7")));
        assertThat(lines).contains(String.join("\t", "2 workers, loopback, one expert layer, 512 tokens a step, Zipf 1.2 load, balanced "
                + "(1 redundant slot)", "predict", "/cache/bench-balance-64x2048x1024-top8-v1", "2", "colocated", "balanced", "off", "512", "0",
                "unlimited", "679.7", "load=balance-load.json", "workload=expert-layers", "redundant=1"));
    }

    @Test
    void poolLaysOutEveryRunAndHandsThemAllToTheSimulator(@TempDir Path dir) throws Exception {
        List<Path> runs = List.of(Files.createDirectories(dir.resolve("a")), Files.createDirectories(dir.resolve("b")));
        int k = 0;
        for (Path run : runs) {
            Files.writeString(run.resolve("measured.txt"), "# run " + run.getFileName() + "\n");
            Files.writeString(run.resolve("cost.json"), "{}");
            double d = k++;
            Files.writeString(run.resolve("w1.txt"), benchEp("1 workers, loopback", new double[] {40, 90, 41, 80}, new double[] {20 + d, 50, 24, 56}));
            Files.writeString(run.resolve("w2.txt"), benchEp("2 workers, loopback", new double[] {42, 96, 43, 82}, new double[] {26, 88, 27, 70}));
            Files.writeString(run.resolve("w4.txt"), benchEp("4 workers, loopback", new double[] {44, 94, 45, 84}, new double[] {19, 74, 22, 64}));
            Files.writeString(run.resolve("w2r.txt"), benchEp("2 workers, loopback", new double[] {46, 98, 47, 86}, new double[] {27, 77, 28, 62}));
        }
        ProcessBuilder pb = new ProcessBuilder("bash", SCRIPT.toString(), "--pool", runs.get(0).toString(), runs.get(1).toString())
                .directory(dir.toFile());
        pb.environment().put("EPSERVE", standInEpserve(dir).toString());
        pb.redirectErrorStream(true);
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).as("calibrate.sh finished").isTrue();
        assertThat(p.exitValue()).as(out).isZero();
        assertThat(out).contains("runs: " + runs.get(0).toRealPath() + "," + runs.get(1).toRealPath());
        // each run laid out from its own measurements
        assertThat(Files.readString(runs.get(0).resolve("points.tsv"))).contains("1 worker, loopback, batch 1\tpredict\tdemo\t1\t")
                .contains("\t22.0\n").startsWith("# run a");
        assertThat(Files.readString(runs.get(1).resolve("points.tsv"))).contains("\t22.5\n").startsWith("# run b");

        Process one = new ProcessBuilder("bash", SCRIPT.toString(), "--pool", runs.get(0).toString()).redirectErrorStream(true).start();
        String refused = new String(one.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(one.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(one.exitValue()).isEqualTo(2);
        assertThat(refused).contains("--pool needs two or more directories");
    }

    @Test
    void relayoutOfADirectoryWithoutAMeasurementIsRefused(@TempDir Path dir) throws Exception {
        Process p = new ProcessBuilder("bash", SCRIPT.toString(), "--relayout", dir.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
        assertThat(p.exitValue()).isEqualTo(2);
        assertThat(out).contains("--relayout needs a directory a calibration run wrote");
    }
}
