package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/** deploy/prometheus/alerts.yaml: valid rules (promtool check rules), unit-tested (promtool test rules), each alert both ways. */
class AlertRulesTest {
    @Test
    void promtoolAcceptsTheRules() throws Exception {
        String out = promtool("check", "rules", DeployFiles.ALERTS.toString());
        assertThat(out).contains("SUCCESS: " + DeployFiles.alertRules().size() + " rules found");
    }

    @Test
    void promtoolUnitTestsPass() throws Exception {
        assertThat(promtool("test", "rules", DeployFiles.ALERT_TESTS.toString())).contains("SUCCESS");
    }

    @Test
    void theAlertsAClusterTeamNeedsAreThere() throws Exception {
        List<DeployFiles.AlertRule> rules = DeployFiles.alertRules();
        assertThat(rules).extracting(DeployFiles.AlertRule::name).containsExactlyInAnyOrder("EpserveWorkerDown",
                "EpserveExpertLoadImbalanced", "EpserveKvCacheFull", "EpserveHighServerErrorRate", "EpserveNotReady");
        DeployFiles.AlertRule imbalance = rules.stream().filter(r -> r.name().equals("EpserveExpertLoadImbalanced")).findFirst().orElseThrow();
        assertThat(imbalance.node().path("for").asText()).isEqualTo("10m");
        for (DeployFiles.AlertRule r : rules) {
            assertThat(r.node().path("labels").path("severity").asText()).as(r.name()).isIn("warning", "critical");
            assertThat(r.node().path("annotations").path("summary").asText()).as(r.name()).isNotBlank();
            assertThat(r.node().path("annotations").path("description").asText()).as(r.name()).isNotBlank();
        }
    }

    @Test
    void everyAlertIsTestedFiringAndNotFiring() throws Exception {
        Set<String> fires = new TreeSet<>();
        Set<String> silent = new TreeSet<>();
        for (JsonNode test : DeployFiles.alertTests().path("tests")) {
            for (JsonNode c : test.path("alert_rule_test")) {
                (c.path("exp_alerts").isEmpty() ? silent : fires).add(c.path("alertname").asText());
            }
        }
        Set<String> names = new TreeSet<>(DeployFiles.alertRules().stream().map(DeployFiles.AlertRule::name).toList());
        assertThat(fires).as("alerts with a case where they fire").isEqualTo(names);
        assertThat(silent).as("alerts with a case where they must not fire").isEqualTo(names);
    }

    private static String promtool(String... args) throws Exception {
        Path promtool = HostTools.prometheus("promtool");
        ProcessBuilder pb = new ProcessBuilder(promtool.toString());
        pb.command().addAll(List.of(args));
        try (RunningProcess p = RunningProcess.start("promtool " + String.join(" ", args), pb)) {
            int code = p.awaitExit(Duration.ofSeconds(60));
            assertThat(code).as("promtool %s:\n%s", String.join(" ", args), p.output()).isZero();
            return p.output();
        }
    }
}
