package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The dashboard and the alert rules read only series a running epserve exports: every metric name
 * their queries use is in the /metrics of a frontend with two remote workers, after a request. A
 * renamed or removed metric fails here, not silently on a cluster's empty panel.
 */
@ExtendWith(SharedCluster.class)
class MetricNamesDriftTest {
    static Set<String> exported;

    @BeforeAll
    static void scrape(EpserveCluster cluster) throws Exception {
        cluster.complete();
        exported = MetricsScrape.sampleNames(cluster.metrics());
    }

    @Test
    void everyDashboardQueryReadsExportedMetrics() throws Exception {
        JsonNode dashboard = DeployFiles.dashboard();
        Map<String, Set<String>> missing = new TreeMap<>();
        for (DeployFiles.PanelQuery q : DeployFiles.queries(dashboard)) {
            for (String name : PromQl.metricNames(q.expr())) {
                if (!exported.contains(name)) {
                    missing.computeIfAbsent(name, n -> new TreeSet<>()).add(q.panel());
                }
            }
        }
        for (String q : DeployFiles.templateQueries(dashboard)) {
            for (String name : PromQl.templateQueryNames(q)) {
                if (!exported.contains(name)) {
                    missing.computeIfAbsent(name, n -> new TreeSet<>()).add("variable query " + q);
                }
            }
        }
        assertThat(missing).as("metric names the dashboard uses (-> panels) that /metrics lacks").isEmpty();
    }

    @Test
    void everyAlertRuleReadsExportedMetrics() throws Exception {
        Map<String, Set<String>> missing = new TreeMap<>();
        for (DeployFiles.AlertRule rule : DeployFiles.alertRules()) {
            for (String name : PromQl.metricNames(rule.expr())) {
                if (!exported.contains(name)) {
                    missing.computeIfAbsent(name, n -> new TreeSet<>()).add(rule.name());
                }
            }
        }
        assertThat(missing).as("metric names the alert rules use (-> alerts) that /metrics lacks").isEmpty();
    }

    @Test
    void theScrapeHasTheSeriesThisTestRestsOn() {
        // guards the test itself: a scrape without the model's series would make everything look missing for the wrong reason
        assertThat(exported).contains("epserve_requests_total", "epserve_expert_routed_tokens_total", "epserve_worker_calls_total");
    }
}
