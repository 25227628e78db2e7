package io.epserve.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What a frontend says about its expert workers, read over HTTP as an operator reads it: the
 * placement epoch and each worker's state, experts and dispatch calls from
 * {@code GET /v1/epserve/workers}; and any per-worker sample of its {@code /metrics}.
 */
final class FrontendWorkers {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One worker as the frontend lists it. */
    record Worker(String address, String state, int experts, long calls) {
        boolean serving() {
            return state.equals("serving") && experts > 0;
        }
    }

    /** The frontend's placement epoch and its workers by address, in its order. */
    record Table(long epoch, Map<String, Worker> workers) {}

    private final HttpClient http;
    private final URI workers;

    FrontendWorkers(HttpClient http, URI base) {
        this.http = http;
        this.workers = base.resolve("/v1/epserve/workers");
    }

    Table read() throws IOException, InterruptedException {
        return parse(get(http, workers));
    }

    static Table parse(String json) throws IOException {
        JsonNode body = JSON.readTree(json);
        Map<String, Worker> out = new LinkedHashMap<>();
        for (JsonNode w : body.path("workers")) {
            String a = w.path("address").asText();
            out.put(a, new Worker(a, w.path("state").asText(), w.path("experts").asInt(), w.path("calls").asLong()));
        }
        return new Table(body.path("epoch").asLong(), out);
    }

    /** The body of GET {@code uri}; an answer other than 200 is an IOException naming it. */
    static String get(HttpClient http, URI uri) throws IOException, InterruptedException {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new IOException("GET " + uri + " answered HTTP " + r.statusCode());
        }
        return r.body();
    }

    /** The samples of {@code metric} labelled only by {@code worker} in a /metrics text, by worker, in its order. */
    static Map<String, Double> perWorker(String text, String metric) {
        Pattern sample = Pattern.compile("^" + Pattern.quote(metric) + "\\{worker=\"([^\"]+)\"\\} (\\S+)");
        Map<String, Double> out = new LinkedHashMap<>();
        for (String line : text.split("\n")) {
            Matcher m = sample.matcher(line);
            if (m.find()) {
                out.put(m.group(1), Double.parseDouble(m.group(2)));
            }
        }
        return out;
    }
}
