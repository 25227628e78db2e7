package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/** deploy/grafana/epserve.json: a dashboard Grafana imports, over a data source chosen at import, covering what operators watch. */
class GrafanaDashboardTest {
    @Test
    void panelsQueryPrometheusThroughTheDataSourceVariable() throws Exception {
        JsonNode d = DeployFiles.dashboard();
        assertThat(d.path("uid").asText()).isEqualTo("epserve-overview");
        assertThat(d.path("templating").path("list").findValuesAsText("name")).contains("datasource", "instance");
        Set<Integer> ids = new HashSet<>();
        Set<String> titles = new HashSet<>();
        for (JsonNode p : DeployFiles.panels(d)) {
            String title = p.path("title").asText();
            assertThat(ids.add(p.path("id").asInt())).as("unique id: %s", title).isTrue();
            assertThat(titles.add(title)).as("unique title: %s", title).isTrue();
            assertThat(p.path("description").asText()).as("description of %s", title).isNotBlank();
            JsonNode grid = p.path("gridPos");
            assertThat(grid.path("x").asInt() + grid.path("w").asInt()).as("%s within 24 columns", title).isLessThanOrEqualTo(24);
            assertThat(p.path("targets")).as("queries of %s", title).isNotEmpty();
            for (JsonNode t : p.path("targets")) {
                assertThat(t.path("datasource").path("uid").asText()).as("data source of %s", title).isEqualTo("${datasource}");
                assertThat(t.path("expr").asText()).as("query of %s", title).isNotBlank();
            }
        }
    }

    @Test
    void coversThroughputLatencyKvExpertLoadBalanceWorkersAndRebalances() throws Exception {
        Set<String> used = new TreeSet<>();
        DeployFiles.queries(DeployFiles.dashboard()).forEach(q -> used.addAll(PromQl.metricNames(q.expr())));
        assertThat(used).contains("epserve_generation_tokens_total", "epserve_requests_total",
                "epserve_time_to_first_token_seconds_bucket", "epserve_time_per_output_token_seconds_bucket",
                "epserve_running_requests", "epserve_waiting_requests", "epserve_kv_cache_usage_ratio",
                "epserve_expert_routed_tokens_total", "epserve_placement_balancedness", "epserve_placement_epoch",
                "epserve_rebalances_total", "epserve_worker_routed_tokens_total", "epserve_worker_round_trip_seconds_total",
                "epserve_worker_calls_total", "epserve_worker_up", "epserve_ready");
    }

    @Test
    void expertLoadHeatmapHasOneRowPerLayerAndExpert() throws Exception {
        List<JsonNode> heatmaps = DeployFiles.panels(DeployFiles.dashboard()).stream()
                .filter(p -> p.path("type").asText().equals("heatmap")).toList();
        assertThat(heatmaps).hasSize(1);
        JsonNode target = heatmaps.get(0).path("targets").get(0);
        assertThat(target.path("expr").asText()).contains("sum by (layer, expert)").contains("epserve_expert_routed_tokens_total");
        assertThat(target.path("legendFormat").asText()).contains("{{layer}}").contains("{{expert}}");
    }
}
