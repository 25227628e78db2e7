package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real Prometheus scraping a running frontend that dispatches to two remote expert workers, with
 * deploy/prometheus/alerts.yaml loaded: the epserve series arrive under Prometheus's own labels,
 * the alert rules evaluate cleanly against them, and every dashboard query is PromQL Prometheus
 * accepts. (Workers serve gRPC only; the frontend exports the per-worker series.)
 */
@ExtendWith(SharedCluster.class)
class PrometheusScrapeTest {
    private static final Duration SCRAPED = Duration.ofSeconds(60);

    @TempDir
    static Path work;
    static EpserveCluster cluster;
    static PrometheusServer prometheus;

    @BeforeAll
    static void start(EpserveCluster shared) throws Exception {
        Path binary = HostTools.prometheus("prometheus");
        cluster = shared;
        cluster.complete();
        cluster.complete();
        double finished = MetricsScrape.sum(cluster.metrics(), "epserve_requests_finished_total");
        prometheus = PrometheusServer.start(binary, work, List.of(cluster.frontendTarget()), List.of(DeployFiles.ALERTS));
        // a scrape taken after the requests: their counters are in
        Await.until("a scrape with the finished requests", SCRAPED, () -> {
            JsonNode r = prometheus.query("sum(epserve_requests_finished_total{job=\"epserve\"})");
            return r.size() == 1 && value(r.get(0)) >= finished ? r : null;
        });
    }

    @AfterAll
    static void stop() throws Exception {
        if (prometheus != null) {
            prometheus.close();
        }
    }

    @Test
    void targetIsUpWithTheScrapeLabels() throws Exception {
        JsonNode targets = prometheus.api("targets?state=active").path("activeTargets");
        assertThat(targets).hasSize(1);
        assertThat(targets.get(0).path("health").asText()).as(targets.toString()).isEqualTo("up");
        JsonNode up = prometheus.query("up{job=\"epserve\"}");
        assertThat(up).hasSize(1);
        assertThat(up.get(0).path("metric").path("instance").asText()).isEqualTo(cluster.frontendTarget());
    }

    @Test
    void requestCounts() throws Exception {
        JsonNode ok = prometheus.query("sum by (endpoint) (epserve_requests_total{job=\"epserve\",status=\"200\"})");
        double completions = byLabel(ok, "endpoint").getOrDefault("completions", 0.0);
        assertThat(completions).isGreaterThanOrEqualTo(2);
        // each completion: 4 tokens (max_tokens, greedy, no EOS on this prompt)
        assertThat(value(prometheus.query("sum(epserve_generation_tokens_total)").get(0))).isEqualTo(4 * completions);
    }

    @Test
    void latencyHistograms() throws Exception {
        double finished = value(prometheus.query("sum(epserve_requests_finished_total)").get(0));
        assertThat(finished).isGreaterThanOrEqualTo(2);
        for (String h : List.of("epserve_time_to_first_token_seconds", "epserve_time_per_output_token_seconds",
                "epserve_request_duration_seconds")) {
            double count = value(prometheus.query(h + "_count").get(0));
            assertThat(count).as(h + "_count: one per finished request").isEqualTo(finished);
            JsonNode buckets = prometheus.query(h + "_bucket");
            assertThat(buckets.size()).as(h + " buckets").isGreaterThan(5);
            assertThat(byLabel(buckets, "le")).containsEntry("+Inf", count);
            assertThat(value(prometheus.query("histogram_quantile(0.5, " + h + "_bucket)").get(0))).as(h + " median").isPositive();
        }
    }

    @Test
    void expertLoadPerLayerAndExpert() throws Exception {
        // the mixtral fixture: 3 sparse layers of 8 experts, top-2
        JsonNode routed = prometheus.query("epserve_expert_routed_tokens_total");
        assertThat(routed).hasSize(3 * 8);
        assertThat(byLabel(prometheus.query("sum by (layer) (epserve_expert_routed_tokens_total)"), "layer"))
                .hasSize(3).allSatisfy((layer, tokens) -> assertThat(tokens).isPositive());
        JsonNode perWorker = prometheus.query("epserve_worker_routed_tokens_total");
        assertThat(byLabel(perWorker, "worker")).containsOnlyKeys(cluster.workerAddresses());
        assertThat(byLabel(prometheus.query("epserve_worker_calls_total"), "worker")).containsOnlyKeys(cluster.workerAddresses())
                .allSatisfy((worker, calls) -> assertThat(calls).isPositive());
    }

    @Test
    void placementBalancednessPerLayer() throws Exception {
        Map<String, Double> balancedness = byLabel(prometheus.query("epserve_placement_balancedness"), "layer");
        assertThat(balancedness).containsOnlyKeys("0", "1", "2");
        // mean / max over 2 workers: the max is at most the sum, twice the mean
        assertThat(balancedness.values()).allSatisfy(b -> assertThat(b).isBetween(0.5, 1.0));
        assertThat(prometheus.query("epserve_placement_epoch")).hasSize(1);
    }

    @Test
    void workerHealthAndReadiness() throws Exception {
        assertThat(byLabel(prometheus.query("epserve_worker_up"), "worker")).containsOnlyKeys(cluster.workerAddresses())
                .allSatisfy((worker, up) -> assertThat(up).as(worker).isEqualTo(1.0));
        assertThat(value(prometheus.query("epserve_ready").get(0))).isEqualTo(1);
    }

    @Test
    void alertRulesEvaluateWithoutErrorsAndNoneFires() throws Exception {
        int rules = DeployFiles.alertRules().size();
        JsonNode groups = Await.until("every alert rule evaluated", SCRAPED, () -> {
            JsonNode g = prometheus.api("rules?type=alert").path("groups");
            List<JsonNode> all = new ArrayList<>();
            g.forEach(group -> group.path("rules").forEach(all::add));
            boolean evaluated = all.size() == rules && all.stream().allMatch(r -> !r.path("lastEvaluation").asText().startsWith("0001"));
            return evaluated ? g : null;
        });
        for (JsonNode rule : groups.get(0).path("rules")) {
            assertThat(rule.path("health").asText()).as("%s: %s", rule.path("name").asText(), rule.path("lastError").asText())
                    .isEqualTo("ok");
        }
        assertThat(prometheus.api("alerts").path("alerts")).as("alerts on a healthy, idle deployment").isEmpty();
    }

    @Test
    void everyDashboardQueryIsValidPromQl() throws Exception {
        List<String> rejected = new ArrayList<>();
        for (DeployFiles.PanelQuery q : DeployFiles.queries(DeployFiles.dashboard())) {
            // Grafana's variables, as Grafana would fill them in
            String expr = q.expr().replace("$__rate_interval", "1m").replace("$instance", ".*");
            try {
                prometheus.query(expr);
            } catch (AssertionError e) {
                rejected.add(q.panel() + ": " + expr + " -> " + e.getMessage());
            }
        }
        assertThat(rejected).as("dashboard queries Prometheus rejects").isEmpty();
    }

    private static double value(JsonNode sample) {
        return Double.parseDouble(sample.path("value").get(1).asText());
    }

    private static Map<String, Double> byLabel(JsonNode vector, String label) {
        Map<String, Double> out = new TreeMap<>();
        vector.forEach(s -> out.put(s.path("metric").path(label).asText(), value(s)));
        return out;
    }
}
