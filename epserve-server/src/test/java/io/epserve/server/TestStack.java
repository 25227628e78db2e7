package io.epserve.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.engine.Engine;
import io.epserve.engine.EngineConfig;
import io.epserve.format.Progress;
import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.BooleanSupplier;
import java.util.function.UnaryOperator;

/**
 * A real server on 127.0.0.1 (port 0) with the real engine over the tiny demo model (2 layers,
 * 8 experts top-2, vocab 512) and 4 in-process expert workers, as `epserve serve` builds it.
 * Every wait in the tests is bounded.
 */
final class TestStack implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(60);
    static final ObjectMapper JSON = new ObjectMapper();
    /** 16 MiB of KV cache: 32k positions of the tiny model. */
    static final EngineConfig ENGINE = EngineConfig.defaults().withKvCacheBytes(16L << 20);

    private static LoadedModel model;
    private static TestStack shared;

    final EpServer server;
    final Engine engine;
    final ServedModel served;
    final InProcessExperts experts;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    static synchronized Path modelDir() {
        return DemoModel.ensure(DemoModel.TINY, Path.of("target", "demo-cache").toAbsolutePath(), Progress.NONE);
    }

    /** The tiny demo model, loaded once per test JVM and kept open (its pages are shared by all stacks). */
    static synchronized LoadedModel model() {
        if (model == null) {
            model = LoadedModel.load(modelDir(), LoadedModel.Options.defaults());
        }
        return model;
    }

    /** One default stack shared by the test classes that need no special engine settings. */
    static synchronized TestStack shared() {
        if (shared == null) {
            shared = start(ENGINE, true, true);
            Runtime.getRuntime().addShutdownHook(new Thread(shared::close));
        }
        return shared;
    }

    static TestStack start(EngineConfig config, boolean startEngine, boolean withTemplate) {
        return new TestStack(config, startEngine, withTemplate, b -> b);
    }

    /** A stack whose server has settings of its own (timeouts, caps, keys, a metrics listener). */
    static TestStack start(UnaryOperator<EpServer.Builder> server) {
        return new TestStack(ENGINE, true, true, server);
    }

    private TestStack(EngineConfig config, boolean startEngine, boolean withTemplate, UnaryOperator<EpServer.Builder> settings) {
        LoadedModel m = model();
        experts = InProcessExperts.create(m, 4, MoeTransformer.RouterChoice.LEARNED);
        engine = new Engine(experts.transformer(), config);
        if (startEngine) {
            engine.start();
        }
        var stats = engine.stats();
        int maxLen = Math.min(m.config().maxPositions(), stats.kvBlocksTotal() * stats.kvBlockSize());
        ServedModel s = ServedModel.fromDirectory(modelDir(), m.config(), Tokenizer.load(modelDir()),
                ExpertLayout.of(experts.placement()), null, maxLen);
        if (!withTemplate) {
            s = new ServedModel(s.id(), s.tokenizer(), Optional.empty(), s.maxModelLen(), s.vocabSize(), s.eosIds(),
                    s.defaults(), s.layout(), s.createdEpochSeconds());
        }
        served = s;
        // clients that close mid-request are checked for being gone every 50 ms (1 s by default), so a
        // cancelled generation is noticed long before a tiny model would finish it
        server = settings.apply(EpServer.builder().host("127.0.0.1").port(0).drainTime(Duration.ZERO).clientCheck(Duration.ofMillis(50)))
                .build().start();
        server.serve(served, engine);
    }

    URI uri(String path) {
        return server.baseUri().resolve(path);
    }

    HttpResponse<String> get(String path) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(uri(path)).timeout(TIMEOUT).GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    HttpResponse<String> post(String path, String body) throws IOException, InterruptedException {
        return http.send(HttpRequest.newBuilder(uri(path)).timeout(TIMEOUT).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    }

    HttpResponse<String> post(String path, Map<String, ?> body) throws IOException, InterruptedException {
        return post(path, JSON.writeValueAsString(body));
    }

    /** The data events of an SSE body, parsed (the final [DONE] excluded, and checked to be last). */
    static List<JsonNode> events(String sse) throws IOException {
        List<JsonNode> out = new ArrayList<>();
        String[] blocks = sse.split("\n\n");
        boolean done = false;
        for (String b : blocks) {
            if (b.isBlank()) {
                continue;
            }
            if (done) {
                throw new AssertionError("event after [DONE]: " + b);
            }
            if (!b.startsWith("data: ")) {
                throw new AssertionError("not an SSE data event: " + b);
            }
            String data = b.substring("data: ".length());
            if (data.equals("[DONE]")) {
                done = true;
            } else {
                out.add(JSON.readTree(data));
            }
        }
        if (!done) {
            throw new AssertionError("stream did not end with [DONE]: " + sse);
        }
        return out;
    }

    /** The value of a sample in Prometheus text, e.g. {@code epserve_requests_total{endpoint="completions",status="200"}}; 0 when absent. */
    static double metric(String text, String sample) {
        for (String line : text.split("\n")) {
            if (line.startsWith(sample + " ")) {
                return Double.parseDouble(line.substring(sample.length() + 1).trim().split(" ")[0]);
            }
        }
        return 0;
    }

    double metric(String sample) throws IOException, InterruptedException {
        return metric(get("/metrics").body(), sample);
    }

    /** Polls a condition until it holds or the timeout passes (a deadline, not a sleep for timing). */
    static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(5);
        }
    }

    @Override
    public void close() {
        server.close();
        engine.close();
    }
}
