package io.epserve.deploy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Pattern;

/** Debian's {@code prometheus}, started on a free local port with a scrape config and rule files, for one test class. */
final class PrometheusServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final RunningProcess process;
    private final URI base;

    private PrometheusServer(RunningProcess process, URI base) {
        this.process = process;
        this.base = base;
    }

    /** Scrapes {@code targets} (job {@code epserve}) every second and evaluates {@code ruleFiles} every second. */
    static PrometheusServer start(Path binary, Path work, List<String> targets, List<Path> ruleFiles)
            throws IOException, InterruptedException {
        StringBuilder config = new StringBuilder("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n");
        for (Path r : ruleFiles) {
            config.append("  - ").append(JSON.writeValueAsString(r.toAbsolutePath().toString())).append('\n');
        }
        config.append("scrape_configs:\n  - job_name: epserve\n    static_configs:\n      - targets: ")
                .append(JSON.writeValueAsString(targets)).append('\n');
        Path file = Files.writeString(work.resolve("prometheus.yml"), config);
        int port;
        try (ServerSocket s = new ServerSocket(0)) {
            port = s.getLocalPort();
        }
        RunningProcess p = RunningProcess.start("prometheus", new ProcessBuilder(binary.toString(),
                "--config.file=" + file, "--storage.tsdb.path=" + work.resolve("data"),
                "--web.listen-address=127.0.0.1:" + port, "--log.level=info"));
        try {
            p.awaitLine(Pattern.compile("Server is ready to receive web requests"), Duration.ofSeconds(60));
        } catch (AssertionError | InterruptedException e) {
            p.close();
            throw e;
        }
        return new PrometheusServer(p, URI.create("http://127.0.0.1:" + port + "/"));
    }

    /** GET {@code /api/v1/<path>}; returns {@code data} after checking {@code status} is success. */
    JsonNode api(String pathAndQuery) throws IOException, InterruptedException {
        JsonNode answer = JSON.readTree(Http.get(base.resolve("api/v1/" + pathAndQuery)));
        if (!answer.path("status").asText().equals("success")) {
            throw new AssertionError("prometheus " + pathAndQuery + ": " + answer);
        }
        return answer.path("data");
    }

    /** An instant query's result vector. */
    JsonNode query(String promql) throws IOException, InterruptedException {
        return api("query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8)).path("result");
    }

    String log() {
        return process.output();
    }

    @Override
    public void close() throws InterruptedException {
        process.close();
    }
}
