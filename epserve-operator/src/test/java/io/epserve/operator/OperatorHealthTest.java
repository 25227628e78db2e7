package io.epserve.operator;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.javaoperatorsdk.operator.Operator;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.junit.jupiter.api.Test;

class OperatorHealthTest {

    private static HttpResponse<String> healthz(OperatorHealth health) throws IOException, InterruptedException {
        try (HttpClient http = HttpClient.newHttpClient()) {
            return http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + health.port() + "/healthz")).build(),
                    HttpResponse.BodyHandlers.ofString());
        }
    }

    @Test
    void healthyOnceStartedAndWatching() throws IOException, InterruptedException {
        InetSocketAddress loopback = new InetSocketAddress(InetAddress.getLoopbackAddress(), 0);
        try (OperatorHarness h = new OperatorHarness(false); KubernetesClient client = h.server.createClient()) {
            Operator notStarted = EpServeOperator.create(client, h.probe, h.clock);
            try (OperatorHealth health = new OperatorHealth(notStarted.getRuntimeInfo(), loopback)) {
                HttpResponse<String> r = healthz(health);
                assertThat(r.statusCode()).isEqualTo(503);
                assertThat(r.body()).isEqualTo("not started\n");
            }
            try (OperatorHealth health = new OperatorHealth(h.operator.getRuntimeInfo(), loopback)) {
                HttpResponse<String> r = healthz(health);
                assertThat(r.statusCode()).isEqualTo(200);
                assertThat(r.body()).isEqualTo("ok\n");
            }
        }
    }
}
