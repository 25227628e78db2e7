package io.epserve.operator.status;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.operator.status.FrontendReport.Source;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * Reads each frontend's {@code /v1/epserve/placement} and {@code /v1/epserve/workers}, and its {@code /metrics}
 * ({@code epserve_placement_epoch}, {@code epserve_placement_balancedness{layer}}, {@code epserve_worker_state},
 * {@code epserve_expert_routed_tokens_total}); the JSON endpoints win where they answer. Every call has a short
 * deadline: a hung frontend delays a reconciliation by at most that, never blocks it.
 */
public final class HttpFrontendProbe implements FrontendProbe {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HttpClient http;
    private final Duration timeout;

    public HttpFrontendProbe(Duration timeout) {
        this.http = HttpClient.newBuilder().connectTimeout(timeout).build();
        this.timeout = timeout;
    }

    /** One frontend's answers. */
    private record Single(boolean api, OptionalLong epoch, OptionalDouble balancedness, OptionalInt serving,
            OptionalDouble routedTokens) {
    }

    @Override
    public FrontendReport observe(List<URI> frontends) {
        List<Single> answers = new ArrayList<>();
        for (URI base : frontends) {
            observeOne(base).ifPresent(answers::add);
        }
        if (answers.isEmpty()) {
            return FrontendReport.unreachable();
        }
        boolean api = answers.stream().allMatch(Single::api);
        OptionalLong epoch = answers.stream().filter(a -> a.epoch().isPresent()).mapToLong(a -> a.epoch().getAsLong()).min();
        OptionalDouble balancedness = answers.stream().filter(a -> a.balancedness().isPresent())
                .mapToDouble(a -> a.balancedness().getAsDouble()).min();
        OptionalInt serving = answers.stream().filter(a -> a.serving().isPresent()).mapToInt(a -> a.serving().getAsInt()).min();
        // A sum over only some frontends would look like a drop in load, so the rate needs every one of them.
        boolean allCounted = answers.size() == frontends.size() && answers.stream().allMatch(a -> a.routedTokens().isPresent());
        OptionalDouble routed = allCounted
                ? OptionalDouble.of(answers.stream().mapToDouble(a -> a.routedTokens().getAsDouble()).sum())
                : OptionalDouble.empty();
        return new FrontendReport(api ? Source.PLACEMENT_API : Source.METRICS, epoch, balancedness, serving, routed);
    }

    private Optional<Single> observeOne(URI base) {
        Optional<String> metricsBody = get(base.resolve("/metrics"));
        if (metricsBody.isEmpty()) {
            return Optional.empty();
        }
        MetricsText metrics = MetricsText.parse(metricsBody.get());
        OptionalLong epoch = metrics.named("epserve_placement_epoch").stream().mapToLong(s -> (long) s.value()).max();
        OptionalDouble balancedness = metrics.named("epserve_placement_balancedness").stream()
                .filter(s -> !Double.isNaN(s.value())).mapToDouble(MetricsText.Sample::value).min();
        List<MetricsText.Sample> states = metrics.named("epserve_worker_state");
        OptionalInt serving = states.isEmpty()
                ? sumAsInt(metrics.named("epserve_worker_up"))
                : OptionalInt.of((int) states.stream()
                        .filter(s -> "serving".equals(s.labels().get("state")) && s.value() == 1).count());
        List<MetricsText.Sample> routed = metrics.named("epserve_expert_routed_tokens_total");
        OptionalDouble routedTokens = routed.isEmpty() ? OptionalDouble.empty()
                : OptionalDouble.of(routed.stream().mapToDouble(MetricsText.Sample::value).sum());

        Optional<JsonNode> placement = getJson(base.resolve("/v1/epserve/placement"));
        Optional<JsonNode> workers = getJson(base.resolve("/v1/epserve/workers"));
        boolean api = placement.isPresent() && placement.get().path("epoch").isIntegralNumber() && workers.isPresent();
        if (api) {
            epoch = OptionalLong.of(placement.get().path("epoch").asLong());
            serving = OptionalInt.of(countServing(workers.get()));
        }
        return Optional.of(new Single(api, epoch, balancedness, serving, routedTokens));
    }

    /** Workers as a top-level array or under {@code "workers"}; each counted when its {@code state} is serving. */
    static int countServing(JsonNode workers) {
        JsonNode list = workers.isArray() ? workers : workers.path("workers");
        int n = 0;
        for (JsonNode w : list) {
            if ("serving".equalsIgnoreCase(w.path("state").asText())) {
                n++;
            }
        }
        return n;
    }

    private static OptionalInt sumAsInt(List<MetricsText.Sample> samples) {
        return samples.isEmpty() ? OptionalInt.empty()
                : OptionalInt.of((int) samples.stream().mapToDouble(MetricsText.Sample::value).sum());
    }

    private Optional<JsonNode> getJson(URI uri) {
        return get(uri).flatMap(body -> {
            try {
                return Optional.of(JSON.readTree(body));
            } catch (IOException e) {
                return Optional.empty();
            }
        });
    }

    private Optional<String> get(URI uri) {
        HttpRequest request = HttpRequest.newBuilder(uri).timeout(timeout).GET().build();
        try {
            HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
            return response.statusCode() == 200 ? Optional.of(response.body()) : Optional.empty();
        } catch (IOException e) {
            return Optional.empty();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return Optional.empty();
        }
    }
}
