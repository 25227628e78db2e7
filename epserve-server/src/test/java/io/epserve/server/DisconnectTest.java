package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** A client that goes away mid-stream has its request cancelled and its KV blocks freed. */
class DisconnectTest {
    @Test
    void disconnectMidStreamCancelsAndFreesKvBlocks() throws Exception {
        TestStack s = TestStack.shared();
        TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
        assertThat(s.engine.stats().kvBlocksUsed()).isZero();
        double cancelledBefore = s.metric("epserve_requests_finished_total{reason=\"cancelled\"}");
        String body = TestStack.JSON.writeValueAsString(Map.of("prompt", "A long story about experts", "max_tokens", 3500,
                "ignore_eos", true, "stream", true, "return_token_ids", true));
        try (RawStream r = new RawStream(s.server.address(), "/v1/completions", body)) {
            assertThat(r.status).isEqualTo(200);
            int tokens = 0;
            while (tokens < 40) {
                JsonNode chunk = TestStack.JSON.readTree(r.nextData());
                tokens += chunk.get("choices").get(0).path("token_ids").size();
            }
            assertThat(s.engine.stats().running()).isEqualTo(1);
            assertThat(s.engine.stats().kvBlocksUsed()).as("blocks held by the stream").isPositive();
        }
        TestStack.await("the request to be cancelled and its blocks freed", () -> s.engine.stats().running() == 0
                && s.engine.stats().kvBlocksUsed() == 0);
        TestStack.await("the cancellation counted", () -> {
            try {
                return s.metric("epserve_requests_finished_total{reason=\"cancelled\"}") == cancelledBefore + 1;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        assertThat(s.metric("epserve_kv_blocks_used")).isZero();
        assertThat(s.server.activeRequests()).isZero();
    }

    @Test
    void disconnectOfANonStreamingRequestCancelsIt() throws Exception {
        TestStack s = TestStack.shared();
        TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
        String body = TestStack.JSON.writeValueAsString(Map.of("prompt", "x", "max_tokens", 3500, "ignore_eos", true));
        Socket socket = new Socket("127.0.0.1", s.server.port());
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        socket.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                + b.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        socket.getOutputStream().write(b);
        socket.getOutputStream().flush();
        TestStack.await("the request to run", () -> s.engine.stats().running() == 1 && s.engine.stats().kvBlocksUsed() > 0);
        socket.close();
        TestStack.await("its blocks freed", () -> s.engine.stats().running() == 0 && s.engine.stats().kvBlocksUsed() == 0);
    }
}
