package io.epserve.deploy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** The monitoring files in the repository's deploy/ folder, read as the tests need them. */
final class DeployFiles {
    static final Path DEPLOY = Path.of(System.getProperty("epserve.root", "..")).toAbsolutePath().normalize().resolve("deploy");
    static final Path ALERTS = DEPLOY.resolve("prometheus/alerts.yaml");
    static final Path ALERT_TESTS = DEPLOY.resolve("prometheus/alerts-test.yaml");
    static final Path DASHBOARD = DEPLOY.resolve("grafana/epserve.json");

    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    private static final ObjectMapper JSON = new ObjectMapper();

    private DeployFiles() {}

    /** One alerting rule: its name and PromQL expression. */
    record AlertRule(String name, String expr, JsonNode node) {}

    static List<AlertRule> alertRules() throws IOException {
        List<AlertRule> rules = new ArrayList<>();
        for (JsonNode group : YAML.readTree(ALERTS.toFile()).path("groups")) {
            for (JsonNode rule : group.path("rules")) {
                rules.add(new AlertRule(rule.path("alert").asText(), rule.path("expr").asText(), rule));
            }
        }
        return rules;
    }

    static JsonNode alertTests() throws IOException {
        return YAML.readTree(ALERT_TESTS.toFile());
    }

    /** A dashboard query: the panel it belongs to and its PromQL. */
    record PanelQuery(String panel, String expr) {}

    static JsonNode dashboard() throws IOException {
        return JSON.readTree(DASHBOARD.toFile());
    }

    /** Every panel, rows' nested panels included, rows themselves not. */
    static List<JsonNode> panels(JsonNode dashboard) {
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode p : dashboard.path("panels")) {
            if (p.path("type").asText().equals("row")) {
                p.path("panels").forEach(out::add);
            } else {
                out.add(p);
            }
        }
        return out;
    }

    static List<PanelQuery> queries(JsonNode dashboard) {
        List<PanelQuery> out = new ArrayList<>();
        for (JsonNode p : panels(dashboard)) {
            for (JsonNode t : p.path("targets")) {
                out.add(new PanelQuery(p.path("title").asText(), t.path("expr").asText()));
            }
        }
        return out;
    }

    /** The queries of the dashboard's query variables (e.g. {@code label_values(metric, instance)}). */
    static List<String> templateQueries(JsonNode dashboard) {
        List<String> out = new ArrayList<>();
        for (JsonNode v : dashboard.path("templating").path("list")) {
            if (v.path("type").asText().equals("query")) {
                JsonNode q = v.path("query");
                out.add(q.isObject() ? q.path("query").asText() : q.asText());
            }
        }
        return out;
    }
}
