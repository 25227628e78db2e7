package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** {@code epserve bench failover} with tiny settings: faults during closed-loop load, no failed request, the report's shape; bad options. */
@Timeout(240)
class BenchFailoverCommandTest {
    static final Pattern FAULT_ROW = Pattern.compile("(?m)^  (\\d+)\\s+(\\d+)\\s+(\\S+)\\s+(\\S+)\\s+(\\S+)\\s+(\\S+)$");

    @Test
    void killsWorkersUnderLoadWithoutAFailedRequest() {
        CliRunner.Outcome o = CliRunner.inProcess("bench", "failover", "--model", ServeCommandTest.tinyModel().toString(), "--clients", "4",
                "--workers", "2", "--warmup", "1s", "--baseline", "2s", "--duration", "6s", "--kill-every", "3s", "--prompt-tokens", "8",
                "--max-tokens", "16", "--kv-memory", "16MiB");
        assertThat(o.exitCode()).as(o.out() + o.err()).isZero();
        assertThat(o.out()).contains("failed requests: 0, wrong outputs: 0", "end-to-end, baseline", "end-to-end, faults",
                "SIGKILL every 3s for 6s");
        Matcher m = FAULT_ROW.matcher(o.out());
        int faults = 0;
        while (m.find()) {
            faults++;
            assertThat(Integer.parseInt(m.group(2))).as("victims in turn").isEqualTo((faults - 1) % 2);
        }
        assertThat(faults).as("a fault every 3 s for 6 s:\n%s", o.out()).isEqualTo(2);
        assertThat(o.err()).contains("fault 1: SIGKILL worker 0", "worker 0 (").contains("restarted as pid");
    }

    @Test
    void badOptionsAreUsageErrors() {
        String model = ServeCommandTest.tinyModel().toString();
        CliRunner.Outcome o = CliRunner.inProcess("bench", "failover", "--model", model, "--signal", "hup");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("--signal must be kill or stop, got 'hup'");
        o = CliRunner.inProcess("bench", "failover", "--model", model, "--duration", "5s", "--kill-every", "10s");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("--duration (5s) must hold at least one --kill-every (10s)");
        o = CliRunner.inProcess("bench", "failover", "--model", model, "--kill-every", "soon");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("'soon' is not a duration");
        o = CliRunner.inProcess("bench", "failover", "--model", model, "--signal", "stop", "--kill-every", "4s", "--stop-for", "5s",
                "--duration", "8s");
        assertThat(o.exitCode()).isEqualTo(2);
        assertThat(o.err()).contains("--stop-for must be positive and shorter than --kill-every");
    }
}
