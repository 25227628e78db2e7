package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** `epserve operator` is registered (the operator Deployment in deploy/ runs it) and documents itself. */
class OperatorCommandTest {

    @Test
    void isACommandWithHelp() {
        CliRunner.Outcome help = CliRunner.inProcess("operator", "--help");
        assertThat(help.exitCode()).isZero();
        assertThat(help.out()).contains("Usage: epserve operator").contains("EpServe resources (epserve.io/v1alpha1)");
        assertThat(CliRunner.inProcess("--help").out()).contains("operator");
    }
}
