package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

class SimulateCommandTest {
    @TempDir
    Path tmp;

    @Test
    void helpDocumentsEveryInput() {
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--help");
        assertThat(o.exitCode()).isZero();
        CommandLine.Model.CommandSpec spec = new CommandLine(new SimulateCommand()).getCommandSpec();
        for (CommandLine.Model.OptionSpec opt : spec.options()) {
            assertThat(o.out()).contains(opt.longestName());
            assertThat(opt.description()).as(opt.longestName()).isNotEmpty();
        }
        for (String input : new String[] {"--workers", "--hosts", "--latency-us", "--bandwidth", "--overlap", "--load", "--zipf", "--policy",
                "--redundant-slots", "--cost", "--fit-cost", "--calibrate", "--expert-dtype", "--cpu", "--frontends"}) {
            assertThat(o.out()).contains(input);
        }
    }

    @Test
    void predictsAFixtureModelWithEveryOutput() throws Exception {
        Path load = tmp.resolve("load.json");
        Files.writeString(load, "{\"layers\":[{\"layer\":0,\"tokens\":[90,5,1,1,1,1,1,0]}]}");
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--model", CliRunner.fixtures().resolve("mixtral/model").toString(),
                "--workers", "2", "--load", load.toString(), "--steps", "5", "--batch", "8", "--overlap");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("| model | placement | W | F | hosts | tokens/s | step p50 / p90 / p99 ms | worker util");
        assertThat(o.out()).containsPattern("\\| model \\| contiguous \\| 2 \\| 1 \\| 2 \\| [0-9.]+ \\| [0-9.]+ / [0-9.]+ / [0-9.]+ \\| ");
        assertThat(o.out()).contains("worker utilisation: [");
        assertThat(o.out()).contains("DP, equal memory");
    }

    @Test
    void badInputNamesTheOption() {
        assertThat(CliRunner.inProcess("simulate", "--bandwidth", "fast").err()).contains("--bandwidth fast");
        assertThat(CliRunner.inProcess("simulate", "--cpu", "many").err()).contains("--cpu many");
        assertThat(CliRunner.inProcess("simulate", "--byte-ns", "-1").err()).contains("--byte-ns");
        assertThat(CliRunner.inProcess("simulate", "--policy", "random").err()).contains("unknown placement policy 'random'");
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--load", tmp.resolve("none.json").toString());
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("none.json");
    }

    @Test
    void calibrationWithTwoMessagePointsFitsCostPerMessageAndPerByte() throws Exception {
        String model = CliRunner.fixtures().resolve("mixtral/model").toString();
        Path f = tmp.resolve("points.tsv");
        Files.writeString(f, String.join("\n",
                "# synthetic figures: the test checks the fit runs and the table prints, not the figures",
                "single, batch 1\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t400",
                "single, batch 8\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t8\t0\tunlimited\t1500",
                "2 workers, batch 1\tfit-message\t" + model + "\t2\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t150",
                "2 workers, batch 8, overlap\tfit-message\t" + model + "\t2\tcolocated\tcontiguous\ton\t8\t0\tunlimited\t500",
                "4 workers, batch 8\tpredict\t" + model + "\t4\tcolocated\tcontiguous\toff\t8\t0\tunlimited\t600", ""));
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--calibrate", f.toString(), "--cpu", "machine:2", "--worker-threads", "1",
                "--steps", "3");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).containsPattern("a message's software [0-9]+ µs \\+ [0-9.]+ ns per byte of a core at each end");
        assertThat(o.out()).contains("| 2 workers, batch 8, overlap | fit (message) | 500.0 |");
        assertThat(o.out()).containsPattern("\\| 4 workers, batch 8 \\| prediction \\| 600.0 \\| [0-9.]+ \\|");
        assertThat(o.out()).contains("of 1 predictions within 15%");
    }

    @Test
    void calibrationRunsArePrintedOneByOneThenPooled() throws Exception {
        String model = CliRunner.fixtures().resolve("mixtral/model").toString();
        Path cost = tmp.resolve("probe.json");
        assertThat(CliRunner.inProcess("simulate", "--calibrate", writePoints(tmp.resolve("seed.tsv"), model, 600), "--cpu", "machine:2",
                "--worker-threads", "1", "--steps", "3", "--save-cost", cost.toString()).exitCode()).isZero();
        List<String> dirs = new ArrayList<>();
        for (int measured : new int[] {500, 700}) {
            Path run = Files.createDirectories(tmp.resolve("run" + measured));
            writePoints(run.resolve("points.tsv"), model, measured);
            Files.copy(cost, run.resolve("cost.json"));
            dirs.add(run.toString());
        }
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--calibrate-runs", String.join(",", dirs), "--cpu", "machine:2",
                "--worker-threads", "1", "--steps", "3");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("run 1: " + dirs.get(0)).contains("run 2: " + dirs.get(1));
        assertThat(o.out()).containsPattern("\\| 4 workers, batch 8 \\| prediction \\| 500.0 \\|");
        assertThat(o.out()).containsPattern("\\| 4 workers, batch 8 \\| prediction \\| 700.0 \\|");
        String pooled = o.out().substring(o.out().indexOf("pooled, 2 runs"));
        assertThat(pooled).containsPattern("\\| 4 workers, batch 8 \\| prediction \\| 600.0 \\|");

        CliRunner.Outcome missing = CliRunner.inProcess("simulate", "--calibrate-runs", dirs.get(0) + "," + tmp.resolve("nowhere"));
        assertThat(missing.exitCode()).isEqualTo(2);
        assertThat(missing.err()).contains("no cost.json");
    }

    private static String writePoints(Path f, String model, int measured) throws Exception {
        Files.writeString(f, String.join("\n",
                "single, batch 1\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t400",
                "single, batch 8\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t8\t0\tunlimited\t1500",
                "2 workers, batch 1\tfit-message\t" + model + "\t2\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t150",
                "2 workers, batch 8, overlap\tfit-message\t" + model + "\t2\tcolocated\tcontiguous\ton\t8\t0\tunlimited\t500",
                "4 workers, batch 8\tpredict\t" + model + "\t4\tcolocated\tcontiguous\toff\t8\t0\tunlimited\t" + measured, ""));
        return f.toString();
    }

    @Test
    void calibrationPointsCarryALoadRedundantSlotsAndTheExpertLayersWorkload() throws Exception {
        String model = CliRunner.fixtures().resolve("mixtral/model").toString();
        Path run = Files.createDirectories(tmp.resolve("skew"));
        // a skewed load on the fixture (3 Mixtral layers, 8 experts top-2): one expert takes most of the pairs; the
        // layers the file lacks take its layer's shares
        int experts = 8;
        StringBuilder tokens = new StringBuilder("[");
        for (int e = 0; e < experts; e++) {
            tokens.append(e == 0 ? "" : ",").append(e == 1 ? 4000 : 100);
        }
        Files.writeString(run.resolve("load.json"), "{\"layers\":[{\"layer\":1,\"tokens\":" + tokens + "]}]}");
        String fits = String.join("\n",
                "single, batch 1\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t400",
                "single, batch 8\tfit-frontend\t" + model + "\t0\tcolocated\tcontiguous\toff\t8\t0\tunlimited\t1500",
                "2 workers, batch 1\tfit-message\t" + model + "\t2\tcolocated\tcontiguous\toff\t1\t0\tunlimited\t150", "");
        String layer = "\t" + model + "\t2\tcolocated\t%s\toff\t64\t0\tunlimited\t1000\tload=load.json\tworkload=%s%s";
        Files.writeString(run.resolve("points.tsv"), fits + String.join("\n",
                "layer, contiguous\tpredict" + layer.formatted("contiguous", "expert-layers", ""),
                "layer, balanced\tpredict" + layer.formatted("balanced", "expert-layers", "\tredundant=1"),
                "decode, contiguous\tpredict" + layer.formatted("contiguous", "decode", ""), ""));
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--calibrate", run.resolve("points.tsv").toString(), "--cpu", "machine:2",
                "--worker-threads", "1", "--steps", "4");
        assertThat(o.exitCode()).as(o.err()).isZero();
        double contiguous = predicted(o.out(), "layer, contiguous");
        double balanced = predicted(o.out(), "layer, balanced");
        double decode = predicted(o.out(), "decode, contiguous");
        // the skew's hot expert sits whole on one worker contiguously; balanced with a redundant slot spreads it
        assertThat(balanced).as(o.out()).isGreaterThan(contiguous);
        // the whole model's step has the frontend's products and the output head besides the same expert layers
        assertThat(decode).as(o.out()).isLessThan(contiguous);

        for (String[] bad : new String[][] {{"redundant=1", "redundant slots apply to the balanced policy only"},
                {"colour=blue", "'colour=blue' is not load=FILE, redundant=N or workload=decode|expert-layers"},
                {"workload=prefill", "workload 'prefill' is not decode or expert-layers"},
                {"load=nowhere.json", "nowhere.json"}}) {
            Files.writeString(run.resolve("bad.tsv"), fits + "p\tpredict" + layer.formatted("contiguous", "decode", "\t" + bad[0]) + "\n");
            CliRunner.Outcome e = CliRunner.inProcess("simulate", "--calibrate", run.resolve("bad.tsv").toString());
            assertThat(e.exitCode()).as(bad[0]).isEqualTo(2);
            assertThat(e.err()).contains("bad.tsv line 4: ").contains(bad[1]);
        }
    }

    /** The predicted tokens/s of a calibration table's row. */
    private static double predicted(String out, String name) {
        String line = out.lines().filter(l -> l.startsWith("| " + name + " |")).findFirst().orElseThrow(() -> new AssertionError(out));
        return Double.parseDouble(line.split("\\|")[4].trim());
    }

    @Test
    void calibrationFileErrorsNameTheLine() throws Exception {
        Path f = tmp.resolve("points.tsv");
        Files.writeString(f, "# comment\nsingle\tfit-frontend\tdemo\t0\n");
        CliRunner.Outcome o = CliRunner.inProcess("simulate", "--calibrate", f.toString());
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("line 2: expected 11 tab-separated fields");
    }
}
