package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `epserve bench balance` on a small layer with in-process workers: what it prints, and its options' errors. */
class BenchBalanceCommandTest {
    @TempDir
    Path dir;

    private CliRunner.Outcome bench(String... more) {
        List<String> args = new ArrayList<>(List.of("bench", "balance", "--in-process", "--experts", "8", "--top-k", "2",
                "--hidden", "32", "--ffn", "16", "--tokens", "48", "--steps", "3", "--warmup-steps", "1", "--dir", dir.toString()));
        args.addAll(List.of(more));
        return CliRunner.inProcess(args.toArray(String[]::new));
    }

    /** The balancedness and cost-balancedness columns of a placement's row. */
    private static double[] row(String out, String placement) {
        String line = out.lines().filter(l -> l.startsWith(placement + " ")).findFirst().orElseThrow(() -> new AssertionError(out));
        String[] f = line.trim().split("\\s+");
        return new double[] {Double.parseDouble(f[1]), Double.parseDouble(f[2])};
    }

    @Test
    void aGivenCostIsWhatTheBalancedPlacementPacks() {
        CliRunner.Outcome o = bench("--cost", "3");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("layer: 8 experts top-2, hidden 32, expert FFN 16", "48 tokens a step", "throughput gain",
                "predicted by balancedness", "re-placement: epoch 2");
        double[] contiguous = row(o.out(), "contiguous");
        double[] balanced = row(o.out(), "balanced");
        assertThat(balanced[1]).as("cost balancedness\n%s", o.out()).isGreaterThan(contiguous[1]);
        assertThat(balanced[0]).as("balancedness\n%s", o.out()).isGreaterThan(contiguous[0]);
    }

    @Test
    void inProcessWorkersReportNoComputeSoAFitFallsBackToPairs() {
        CliRunner.Outcome o = bench();
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("balancing pairs alone");
        double[] balanced = row(o.out(), "balanced");
        assertThat(balanced[1]).as("under pairs alone the two figures are one").isEqualTo(balanced[0]);
    }

    @Test
    void theLoadOfTheMeasuredContiguousStepsIsWrittenForTheSimulator() throws Exception {
        Path load = dir.resolve("load.json");
        CliRunner.Outcome o = bench("--cost", "pairs", "--load-out", load.toString());
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).containsPattern("(?m)^model directory: .*bench-balance-8x32x16-top2");
        JsonNode json = new ObjectMapper().readTree(load.toFile());
        // the 3 measured contiguous steps of 48 tokens, 2 experts each, on the one sparse layer
        assertThat(json.get("steps").asLong()).isEqualTo(3);
        assertThat(json.get("layers")).hasSize(1);
        JsonNode tokens = json.get("layers").get(0).get("tokens");
        assertThat(tokens).hasSize(8);
        long sum = 0;
        for (JsonNode n : tokens) {
            sum += n.asLong();
        }
        assertThat(sum).isEqualTo(3 * 48 * 2);

        CliRunner.Outcome nowhere = bench("--load-out", dir.resolve("missing/load.json").toString());
        assertThat(nowhere.exitCode()).isEqualTo(2);
        assertThat(nowhere.err()).contains("--load-out").contains("its directory does not exist");
    }

    @Test
    void aCostThatIsNotFitPairsOrANumberIsRefused() {
        CliRunner.Outcome o = bench("--cost", "lots");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("--cost must be fit, pairs or an expert's fixed part in pairs").contains("'lots'");
        CliRunner.Outcome negative = bench("--cost", "-2");
        assertThat(negative.exitCode()).isEqualTo(2);
        assertThat(negative.err()).contains("--cost");
    }
}
