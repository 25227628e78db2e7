package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * API keys: every API endpoint asks for {@code Authorization: Bearer KEY}; the probes never do;
 * {@code /metrics} and the live view are behind the same check, or on their own listener without it.
 */
class ApiKeyTest {
    static final String KEY = "sk-test-0123456789";
    static final String OTHER = "sk-second-key";
    static final String COMPLETION = "{\"prompt\": \"hi\", \"max_tokens\": 2}";

    private static HttpResponse<String> send(TestStack s, URI uri, String key, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(uri).timeout(TestStack.TIMEOUT);
        if (key != null) {
            b.header("Authorization", key);
        }
        if (body != null) {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        }
        return s.http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    private static void refused(HttpResponse<String> r) throws Exception {
        assertThat(r.statusCode()).as(r.body()).isEqualTo(401);
        assertThat(r.headers().firstValue("www-authenticate")).hasValue("Bearer");
        JsonNode e = TestStack.JSON.readTree(r.body()).get("error");
        assertThat(e.get("code").asText()).isEqualTo("invalid_api_key");
        assertThat(e.get("message").asText()).doesNotContain(KEY);
    }

    @Test
    void keysGuardTheApiAndMetricsOnOneListener() throws Exception {
        try (TestStack s = TestStack.start(b -> b.apiKeys(List.of(KEY, OTHER)))) {
            for (String path : List.of("/v1/models", "/v1/models/" + s.served.id(), "/metrics", "/", "/view.js")) {
                refused(send(s, s.uri(path), null, null));
                refused(send(s, s.uri(path), "Bearer wrong", null));
                refused(send(s, s.uri(path), KEY, null)); // the scheme is required
                assertThat(send(s, s.uri(path), "Bearer " + KEY, null).statusCode()).as(path).isEqualTo(200);
            }
            refused(send(s, s.uri("/v1/completions"), null, COMPLETION));
            refused(send(s, s.uri("/v1/chat/completions"), "Bearer " + KEY + "x", "{}"));
            assertThat(send(s, s.uri("/v1/completions"), "Bearer " + OTHER, COMPLETION).statusCode()).isEqualTo(200);
            assertThat(send(s, s.uri("/v1/completions"), "bearer " + KEY, COMPLETION).statusCode())
                    .as("the scheme is case-insensitive").isEqualTo(200);
            // probes stay open for load balancers and orchestrators
            assertThat(send(s, s.uri("/health"), null, null).statusCode()).isEqualTo(200);
            assertThat(send(s, s.uri("/ready"), null, null).statusCode()).isEqualTo(200);
            // an unknown path is a 404 either way; the key check does not hide it
            assertThat(send(s, s.uri("/v2/x"), null, null).statusCode()).isEqualTo(404);
        }
    }

    @Test
    void aMetricsListenerServesMetricsAndTheLiveViewWithoutKeys() throws Exception {
        try (TestStack s = TestStack.start(b -> b.apiKeys(List.of(KEY)).metricsListen(new EpServer.Listen("127.0.0.1", 0)))) {
            URI ops = s.server.metricsUri();
            assertThat(ops).isNotNull();
            assertThat(ops.getPort()).isNotEqualTo(s.server.port());
            HttpResponse<String> metrics = send(s, ops.resolve("/metrics"), null, null);
            assertThat(metrics.statusCode()).isEqualTo(200);
            assertThat(metrics.body()).contains("epserve_generation_tokens_total");
            assertThat(send(s, ops.resolve("/"), null, null).statusCode()).isEqualTo(200);
            assertThat(send(s, ops.resolve("/health"), null, null).statusCode()).isEqualTo(200);
            // the API is not on the metrics listener, and metrics are not on the API listener
            assertThat(send(s, ops.resolve("/v1/completions"), "Bearer " + KEY, COMPLETION).statusCode()).isEqualTo(404);
            assertThat(send(s, s.uri("/metrics"), "Bearer " + KEY, null).statusCode()).isEqualTo(404);
            refused(send(s, s.uri("/v1/models"), null, null));
            assertThat(send(s, s.uri("/v1/models"), "Bearer " + KEY, null).statusCode()).isEqualTo(200);
        }
    }

    @Test
    void withoutKeysNothingIsAsked() throws Exception {
        TestStack s = TestStack.shared();
        assertThat(send(s, s.uri("/v1/models"), null, null).statusCode()).isEqualTo(200);
        assertThat(send(s, s.uri("/metrics"), "Bearer anything", null).statusCode()).isEqualTo(200);
    }

    @Test
    void keysAreCheckedWhenTheConfigIsBuilt() {
        assertThatThrownBy(() -> EpServer.builder().apiKeys(List.of("has space")).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("API key");
        assertThatThrownBy(() -> EpServer.builder().apiKeys(List.of("")).build())
                .isInstanceOf(IllegalArgumentException.class);
    }
}
