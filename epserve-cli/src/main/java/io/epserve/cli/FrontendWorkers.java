package io.epserve.cli;

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
 * What a frontend says about its expert workers, read over HTTP as an operator would: whether
 * each is up ({@code epserve_worker_up{worker}}) and how many dispatch calls it has answered
 * ({@code epserve_worker_calls_total{worker}}), from its {@code /metrics}. A worker that is up and
 * whose calls grow is computing its experts for the frontend (the frontend computes them itself
 * while any worker fails, so nobody's calls grow then).
 */
final class FrontendWorkers {
    /** One worker as the frontend sees it. */
    record Worker(String address, boolean up, long calls) {}

    private final HttpClient http;
    private final URI metrics;

    FrontendWorkers(HttpClient http, URI base) {
        this.http = http;
        this.metrics = base.resolve("/metrics");
    }

    /** The workers by address, in the order the frontend lists them. */
    Map<String, Worker> read() throws IOException, InterruptedException {
        return parse(scrape(http, metrics));
    }

    static Map<String, Worker> parse(String text) {
        Map<String, Double> up = perWorker(text, "epserve_worker_up");
        Map<String, Double> calls = perWorker(text, "epserve_worker_calls_total");
        Map<String, Worker> out = new LinkedHashMap<>();
        up.forEach((w, v) -> out.put(w, new Worker(w, v == 1.0, calls.getOrDefault(w, 0.0).longValue())));
        return out;
    }

    /** The body of GET {@code metrics}; an answer other than 200 is an IOException naming it. */
    static String scrape(HttpClient http, URI metrics) throws IOException, InterruptedException {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(metrics).timeout(Duration.ofSeconds(10)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
        if (r.statusCode() != 200) {
            throw new IOException("GET " + metrics + " answered HTTP " + r.statusCode());
        }
        return r.body();
    }

    /** The samples of {@code metric} labelled only by {@code worker}, by worker, in the exposition's order. */
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
