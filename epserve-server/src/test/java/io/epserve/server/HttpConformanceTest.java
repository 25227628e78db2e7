package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * HTTP/1.1 as RFC 9112 asks, over raw sockets: pipelined requests answered in order, half-closed
 * clients answered, unsupported versions, oversized and malformed requests, slow headers and idle
 * connections; every refusal with its exact status and an OpenAI-style JSON error body.
 */
class HttpConformanceTest {
    static final Duration HEADER_TIMEOUT = Duration.ofMillis(600);
    static final Duration IDLE_TIMEOUT = Duration.ofMillis(1500);
    static final int MAX_HEADER_BYTES = 4096;
    static final int MAX_BODY_BYTES = 64 << 10;
    static final String COMPLETION = "{\"prompt\": \"hello\", \"max_tokens\": 4, \"temperature\": 0, \"ignore_eos\": true}";

    static TestStack s;

    @BeforeAll
    static void start() {
        s = TestStack.start(b -> b.headerTimeout(HEADER_TIMEOUT).idleTimeout(IDLE_TIMEOUT).maxHeaderBytes(MAX_HEADER_BYTES)
                .maxRequestBytes(MAX_BODY_BYTES));
    }

    @AfterAll
    static void stop() {
        s.close();
    }

    private RawHttp connect() throws IOException {
        return new RawHttp(s.server.address());
    }

    @Test
    void pipelinedRequestsAreAnsweredInOrder() throws Exception {
        String stream = "{\"prompt\": \"hello\", \"max_tokens\": 6, \"ignore_eos\": true, \"stream\": true}";
        try (RawHttp c = connect()) {
            // a slow generation first: the quick ones behind it must wait for it, not overtake it
            c.send(RawHttp.post("/v1/completions", COMPLETION) + RawHttp.get("/health") + RawHttp.post("/v1/completions", stream)
                    + RawHttp.get("/v1/models") + RawHttp.get("/nope") + RawHttp.get("/ready"));
            RawHttp.Response first = c.read();
            assertThat(first.status()).isEqualTo(200);
            assertThat(first.json().get("object").asText()).isEqualTo("text_completion");
            assertThat(first.json().at("/usage/completion_tokens").asInt()).isEqualTo(4);
            assertThat(c.read().json().get("status").asText()).isEqualTo("ok");
            RawHttp.Response streamed = c.read();
            assertThat(streamed.headers().get("content-type")).startsWith("text/event-stream");
            assertThat(TestStack.events(streamed.body())).isNotEmpty();
            assertThat(c.read().json().get("object").asText()).isEqualTo("list");
            RawHttp.Response missing = c.read();
            assertThat(missing.status()).isEqualTo(404);
            assertThat(missing.error().get("code").asText()).isEqualTo("unknown_url");
            assertThat(c.read().json().get("status").asText()).isEqualTo("ready");
        }
    }

    @Test
    void manyPipelinedRequestsInOneWrite() throws Exception {
        int n = 500;
        try (RawHttp c = connect()) {
            c.send(RawHttp.get("/health").repeat(n) + RawHttp.get("/v1/models"));
            for (int i = 0; i < n; i++) {
                assertThat(c.read().json().get("status").asText()).isEqualTo("ok");
            }
            assertThat(c.read().json().get("object").asText()).isEqualTo("list");
        }
    }

    @Test
    void halfClosedClientGetsItsAnswers() throws Exception {
        try (RawHttp c = connect()) {
            c.send(RawHttp.post("/v1/completions", COMPLETION) + RawHttp.get("/health"));
            c.socket.shutdownOutput();
            RawHttp.Response r = c.read();
            assertThat(r.status()).isEqualTo(200);
            assertThat(r.json().at("/usage/completion_tokens").asInt()).isEqualTo(4);
            assertThat(c.read().status()).isEqualTo(200);
            assertThat(c.closedByServer()).as("closed once everything is answered").isTrue();
        }
    }

    /**
     * A client that closes its socket while a non-streaming generation runs looks like a half-close
     * at first (both send FIN); the server's interim 102 responses find out, and the generation is
     * cancelled rather than run to its end.
     */
    @Test
    void aClientGoneDuringANonStreamingRequestCancelsIt() throws Exception {
        TestStack.await("an idle engine", () -> s.engine.stats().running() == 0 && s.engine.stats().waiting() == 0);
        double cancelled = s.metric("epserve_requests_finished_total{reason=\"cancelled\"}");
        try (RawHttp c = connect()) {
            c.send(RawHttp.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 3900, \"ignore_eos\": true}"));
            TestStack.await("the request to run", () -> s.engine.stats().running() == 1);
        }
        TestStack.await("the request cancelled", () -> {
            try {
                return s.metric("epserve_requests_finished_total{reason=\"cancelled\"}") == cancelled + 1;
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        });
        TestStack.await("its blocks freed", () -> s.engine.stats().running() == 0 && s.engine.stats().kvBlocksUsed() == 0);
    }

    @Test
    void connectionCloseIsHonoured() throws Exception {
        try (RawHttp c = connect()) {
            c.send("GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + RawHttp.get("/health"));
            RawHttp.Response r = c.read();
            assertThat(r.status()).isEqualTo(200);
            assertThat(r.headers().get("connection")).isEqualToIgnoringCase("close");
            assertThat(c.closedByServer()).as("nothing after the response to Connection: close").isTrue();
        }
        try (RawHttp c = connect()) {
            c.send("GET /health HTTP/1.0\r\n\r\n");
            assertThat(c.read().status()).isEqualTo(200);
            assertThat(c.closedByServer()).as("HTTP/1.0 without keep-alive").isTrue();
        }
    }

    @Test
    void absoluteFormTargetsAndHttp10WithoutHost() throws Exception {
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("GET http://t:8080/v1/models?x=1 HTTP/1.1\r\nHost: t\r\n\r\n").read();
            assertThat(r.status()).isEqualTo(200);
            assertThat(r.json().get("object").asText()).isEqualTo("list");
        }
        try (RawHttp c = connect()) {
            assertThat(c.send("GET /health HTTP/1.0\r\n\r\n").read().status()).as("Host is optional in HTTP/1.0").isEqualTo(200);
        }
    }

    @Test
    void unsupportedVersionsAre505() throws Exception {
        for (String version : List.of("HTTP/9.9", "HTTP/2.0", "HTTP/1.2")) {
            try (RawHttp c = connect()) {
                RawHttp.Response r = c.send("GET /health " + version + "\r\nHost: t\r\n\r\n").read();
                assertThat(r.status()).as(version).isEqualTo(505);
                assertThat(r.error().get("code").asText()).isEqualTo("http_version_not_supported");
                assertThat(r.error().get("message").asText()).contains(version);
                assertThat(c.closedByServer()).isTrue();
            }
        }
    }

    @Test
    void malformedRequestsAre400() throws Exception {
        byte[] clientHello = HexFormat.of().parseHex("16030100a5010000a10303" + "00".repeat(32) + "000002c02f0100");
        List<byte[]> bad = new ArrayList<>(List.of(clientHello));
        for (String raw : List.of("GARBAGE\r\n\r\n", "GET /health HTTP/1.1 extra\r\nHost: t\r\n\r\n",
                "GET /health HTTP/1.1\nHost: t\n\n", "GET\u0001 /health HTTP/1.1\r\nHost: t\r\n\r\n",
                "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
                "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                        + "Content-Length: 3\r\n\r\n{}",
                "GET /health HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", "GET /health HTTP/1.1\r\n\r\n",
                "GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")) {
            bad.add(raw.getBytes(StandardCharsets.ISO_8859_1));
        }
        for (byte[] b : bad) {
            String what = new String(b, StandardCharsets.ISO_8859_1);
            try (RawHttp c = connect()) {
                RawHttp.Response r = c.send(b).read();
                assertThat(r.status()).as(what).isEqualTo(400);
                assertThat(r.error().get("type").asText()).isEqualTo("invalid_request_error");
                assertThat(r.error().get("message").asText()).as(what).doesNotContain("no such endpoint");
                assertThat(c.closedByServer()).as("a connection whose framing is lost is closed: " + what).isTrue();
            }
        }
    }

    @Test
    void oversizedRequestLineIs414AndHeadersAre431() throws Exception {
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("GET /" + "a".repeat(MAX_HEADER_BYTES + 10) + " HTTP/1.1\r\nHost: t\r\n\r\n").read();
            assertThat(r.status()).isEqualTo(414);
            assertThat(r.error().get("code").asText()).isEqualTo("uri_too_long");
        }
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + "b".repeat(20_000) + "\r\n\r\n").read();
            assertThat(r.status()).isEqualTo(431);
            assertThat(r.error().get("message").asText()).contains(Integer.toString(MAX_HEADER_BYTES));
        }
    }

    @Test
    void oversizedBodyIs413AndUnknownExpectationIs417() throws Exception {
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: "
                    + (MAX_BODY_BYTES + 1) + "\r\n\r\n{").read();
            assertThat(r.status()).isEqualTo(413);
            assertThat(r.error().get("code").asText()).isEqualTo("request_too_large");
        }
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue"
                    + "\r\nContent-Length: " + (MAX_BODY_BYTES + 1) + "\r\n\r\n").read();
            assertThat(r.status()).isEqualTo(413);
            r.error();
        }
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: teapot"
                    + "\r\nContent-Length: 2\r\n\r\n{}").read();
            assertThat(r.status()).isEqualTo(417);
            assertThat(r.error().get("code").asText()).isEqualTo("expectation_failed");
        }
        try (RawHttp c = connect()) {
            // 100-continue within the limit: the interim response, then the answer
            RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nExpect: 100-continue"
                    + "\r\nContent-Length: " + COMPLETION.length() + "\r\n\r\n" + COMPLETION).read();
            assertThat(r.status()).isEqualTo(200);
        }
    }

    @Test
    void slowHeadersAreClosedAfterTheTimeout() throws Exception {
        double before = s.metric("epserve_http_header_timeouts_total");
        try (RawHttp c = connect()) {
            long t0 = System.nanoTime();
            c.send("GET /health HTTP/1.1\r\nHo");
            // one byte every 100 ms keeps the connection busy: an idle timer would never fire
            for (int i = 0; i < 30 && !c.socket.isClosed(); i++) {
                try {
                    c.send("x");
                } catch (IOException closed) {
                    break;
                }
                if (Duration.ofNanos(System.nanoTime() - t0).compareTo(HEADER_TIMEOUT.multipliedBy(3)) > 0) {
                    break;
                }
                Thread.sleep(100); // the client's pace, part of what is tested
            }
            RawHttp.Response r = c.read();
            Duration took = Duration.ofNanos(System.nanoTime() - t0);
            assertThat(r.status()).isEqualTo(408);
            assertThat(r.error().get("code").asText()).isEqualTo("request_timeout");
            assertThat(took).isGreaterThanOrEqualTo(HEADER_TIMEOUT).isLessThan(HEADER_TIMEOUT.plus(TestStack.TIMEOUT));
            assertThat(c.closedByServer()).isTrue();
        }
        assertThat(s.metric("epserve_http_header_timeouts_total")).isEqualTo(before + 1);
    }

    @Test
    void idleConnectionsAreClosedButKeptAliveOnesWork() throws Exception {
        try (RawHttp c = connect()) {
            assertThat(c.send(RawHttp.get("/health")).read().status()).isEqualTo(200);
            assertThat(c.send(RawHttp.get("/health")).read().status()).as("keep-alive").isEqualTo(200);
            long t0 = System.nanoTime();
            assertThat(c.closedByServer()).isTrue();
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).isGreaterThanOrEqualTo(IDLE_TIMEOUT.minusMillis(100));
        }
    }

    @Test
    void generationNeedsJsonContentType() throws Exception {
        for (String type : List.of("", "Content-Type: text/plain\r\n", "Content-Type: application/x-www-form-urlencoded\r\n")) {
            try (RawHttp c = connect()) {
                RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\n" + type + "Content-Length: "
                        + COMPLETION.length() + "\r\n\r\n" + COMPLETION).read();
                assertThat(r.status()).as(type).isEqualTo(415);
                assertThat(r.error().get("message").asText()).contains("application/json");
            }
        }
        try (RawHttp c = connect()) {
            RawHttp.Response r = c.send("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: Application/JSON; charset=utf-8\r\n"
                    + "Content-Length: " + COMPLETION.length() + "\r\n\r\n" + COMPLETION).read();
            assertThat(r.status()).as("parameters and case do not matter").isEqualTo(200);
        }
    }

    @Test
    void tooManyConnectionsAre503() throws Exception {
        int cap = 3;
        try (TestStack capped = TestStack.start(b -> b.maxConnections(cap))) {
            List<RawHttp> open = new ArrayList<>();
            try {
                for (int i = 0; i < cap; i++) {
                    RawHttp c = new RawHttp(capped.server.address());
                    open.add(c);
                    assertThat(c.send(RawHttp.get("/health")).read().status()).isEqualTo(200);
                }
                try (RawHttp over = new RawHttp(capped.server.address())) {
                    RawHttp.Response r = over.read();
                    assertThat(r.status()).isEqualTo(503);
                    assertThat(r.error().get("message").asText()).contains("too many open connections");
                    assertThat(r.headers()).containsKey("retry-after");
                }
                open.removeFirst().close();
                TestStack.await("a free connection slot", () -> {
                    try (RawHttp again = new RawHttp(capped.server.address())) {
                        return again.send(RawHttp.get("/health")).read().status() == 200;
                    } catch (IOException e) {
                        return false;
                    }
                });
            } finally {
                for (RawHttp c : open) {
                    c.close();
                }
            }
            // the scrape is a connection too: the closes above free their slots asynchronously, so it may be refused itself
            TestStack.await("the refused connection counted", () -> {
                try {
                    return capped.metric("epserve_http_connections_refused_total") >= 1.0;
                } catch (IOException e) {
                    return false;
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new AssertionError(e);
                }
            });
        }
    }
}
