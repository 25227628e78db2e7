package io.epserve.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.ConcurrentHistogram;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code epserve loadgen}: closed-loop load on an OpenAI-compatible server. C clients each send a
 * streaming completion, wait for its last token, and send the next, until N requests are done.
 * Prompts are P random token ids (the completions API takes token ids, so the length is exact)
 * and each request asks for exactly G tokens ({@code ignore_eos}, an extension epserve and vLLM
 * honour), so runs are comparable.
 */
@Command(name = "loadgen", mixinStandardHelpOptions = true,
        description = {"Closed-loop load generator for an OpenAI-compatible server: --concurrency clients send "
                + "streaming completions of --prompt-tokens random token ids asking for --max-tokens tokens "
                + "(ignore_eos) until --requests are done, then print requests/s, output tokens/s and the "
                + "p50/p90/p99 of time to first token (TTFT), time per output token (TPOT) and end-to-end "
                + "latency. A progress bar is drawn on an interactive stderr."})
final class LoadgenCommand implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Histograms in microseconds, up to an hour, 3 significant digits. */
    private static final long MAX_MICROS = 3_600_000_000L;

    @Option(names = "--url", defaultValue = "http://127.0.0.1:8080",
            description = "Server base URL, with or without /v1 (default ${DEFAULT-VALUE}).")
    String url;

    @Option(names = "--concurrency", paramLabel = "C", defaultValue = "8", description = "Concurrent clients (default ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--requests", paramLabel = "N", defaultValue = "64", description = "Requests in all (default ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--prompt-tokens", paramLabel = "P", defaultValue = "128", description = "Prompt length in tokens (default ${DEFAULT-VALUE}).")
    int promptTokens;

    @Option(names = "--max-tokens", paramLabel = "G", defaultValue = "128", description = "Tokens to generate per request (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--model", paramLabel = "NAME", description = "Model name. Default: the first model of GET /v1/models.")
    String modelName;

    @Option(names = "--temperature", defaultValue = "1.0", description = "Sampling temperature (default ${DEFAULT-VALUE}).")
    double temperature;

    @Option(names = "--seed", defaultValue = "0", description = "Seed of the prompts and of each request's sampler (request i: seed + i).")
    long seed;

    @Option(names = "--timeout", paramLabel = "SECONDS", defaultValue = "600", description = "Per-request timeout (default ${DEFAULT-VALUE}).")
    int timeoutSeconds;

    @Option(names = "--json", description = "Print one JSON object with the results instead of the table.")
    boolean json;

    /** One finished request's measurements, in nanoseconds. */
    record Sample(long ttft, long e2e, int outputTokens) {}

    @Override
    public Integer call() throws Exception {
        Report r = run(System.out, System.err, System.console() != null && System.getenv("EPSERVE_NO_PROGRESS") == null);
        return exitCode(r, System.err);
    }

    /** 0 when every request succeeded; else 1, after a line on stderr (the failures are listed, grouped, in the report). */
    int exitCode(Report r, PrintStream err) {
        int failed = r.failures().values().stream().mapToInt(Integer::intValue).sum();
        if (failed == 0) {
            return 0;
        }
        err.println("epserve: loadgen: " + failed + " of " + requests + " requests failed");
        r.failures().forEach((why, n) -> err.printf(Locale.ROOT, "  %6d  %s%n", n, why));
        err.flush();
        return 1;
    }

    /** The results of a run. */
    record Report(int ok, Map<String, Integer> failures, double seconds, long outputTokens, Histogram ttft, Histogram tpot,
                  Histogram e2e) {}

    Report run(PrintStream out, PrintStream err, boolean progressBar) throws Exception {
        check(concurrency >= 1, "--concurrency must be at least 1");
        check(requests >= 1, "--requests must be at least 1");
        check(promptTokens >= 1, "--prompt-tokens must be at least 1");
        check(maxTokens >= 1, "--max-tokens must be at least 1");
        check(timeoutSeconds >= 1, "--timeout must be at least 1 s");
        URI base = baseUri(url);
        HttpClient http = StreamingCompletion.newClient();
        JsonNode card = model(http, base);
        String model = card.path("id").asText();
        int vocab = vocab(card);

        ConcurrentHistogram ttft = new ConcurrentHistogram(MAX_MICROS, 3);
        ConcurrentHistogram tpot = new ConcurrentHistogram(MAX_MICROS, 3);
        ConcurrentHistogram e2e = new ConcurrentHistogram(MAX_MICROS, 3);
        AtomicInteger next = new AtomicInteger();
        AtomicInteger done = new AtomicInteger();
        AtomicInteger ok = new AtomicInteger();
        AtomicLong tokens = new AtomicLong();
        Map<String, Integer> failures = new TreeMap<>();
        long start = System.nanoTime();
        Progress bar = progressBar ? new Progress(err, requests, done, tokens, start) : null;
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int c = 0; c < Math.min(concurrency, requests); c++) {
                clients.submit(() -> {
                    for (int i; (i = next.getAndIncrement()) < requests; ) {
                        try {
                            Sample s = one(http, base, model, vocab, i);
                            ttft.recordValue(Math.min(MAX_MICROS, s.ttft() / 1000));
                            e2e.recordValue(Math.min(MAX_MICROS, s.e2e() / 1000));
                            if (s.outputTokens() > 1) {
                                tpot.recordValue(Math.min(MAX_MICROS, (s.e2e() - s.ttft()) / 1000 / (s.outputTokens() - 1)));
                            }
                            tokens.addAndGet(s.outputTokens());
                            ok.incrementAndGet();
                        } catch (StreamingCompletion.Failure f) {
                            synchronized (failures) {
                                failures.merge(f.getMessage(), 1, Integer::sum);
                            }
                        } finally {
                            done.incrementAndGet();
                        }
                    }
                    return null;
                });
            }
        } finally {
            if (bar != null) {
                bar.close();
            }
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        Report report = new Report(ok.get(), failures, seconds, tokens.get(), ttft, tpot, e2e);
        print(out, report, model);
        if (report.ok() == 0) {
            throw new Main.UsageError("all " + requests + " requests failed: " + failures);
        }
        return report;
    }

    private static void check(boolean ok, String message) {
        if (!ok) {
            throw new Main.UsageError(message);
        }
    }

    static URI baseUri(String url) {
        String u = url.strip();
        while (u.endsWith("/")) {
            u = u.substring(0, u.length() - 1);
        }
        if (u.endsWith("/v1")) {
            u = u.substring(0, u.length() - 3);
        }
        if (!u.startsWith("http://") && !u.startsWith("https://")) {
            throw new Main.UsageError("--url must start with http:// or https://, got '" + url + "'");
        }
        try {
            return URI.create(u + "/");
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--url '" + url + "' is not a URL: " + e.getMessage());
        }
    }

    /**
     * The vocabulary prompts draw from: the card's {@code vocab_size} (epserve), else llama-server's
     * {@code meta.n_vocab}, else 256 (byte-level ids every tokenizer has), so that both servers of a
     * comparison read prompts over the same ids.
     */
    static int vocab(JsonNode card) {
        int v = card.path("vocab_size").asInt(0);
        if (v <= 0) {
            v = card.path("meta").path("n_vocab").asInt(0);
        }
        return v > 0 ? v : 256;
    }

    /** The model card to use: --model's, else the server's first. */
    private JsonNode model(HttpClient http, URI base) throws InterruptedException {
        HttpResponse<String> r;
        try {
            r = http.send(HttpRequest.newBuilder(base.resolve("v1/models")).timeout(Duration.ofSeconds(30)).GET().build(),
                    HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new Main.UsageError("cannot reach " + base + ": " + StreamingCompletion.describe(e));
        }
        if (r.statusCode() != 200) {
            throw new Main.UsageError("GET " + base.resolve("v1/models") + " answered HTTP " + r.statusCode() + ": " + r.body());
        }
        JsonNode data;
        try {
            data = JSON.readTree(r.body()).path("data");
        } catch (IOException e) {
            throw new Main.UsageError("GET /v1/models did not answer JSON: " + e.getMessage());
        }
        for (JsonNode m : data) {
            if (modelName == null || modelName.equals(m.path("id").asText())) {
                return m;
            }
        }
        if (modelName != null) {
            return JSON.createObjectNode().put("id", modelName);
        }
        throw new Main.UsageError("the server lists no model at " + base.resolve("v1/models"));
    }

    private Sample one(HttpClient http, URI base, String model, int vocab, int i) throws StreamingCompletion.Failure {
        SplittableRandom rnd = new SplittableRandom(seed * 1_000_003L + i);
        int[] prompt = new int[promptTokens];
        for (int t = 0; t < promptTokens; t++) {
            prompt[t] = rnd.nextInt(vocab);
        }
        StreamingCompletion.Result r = StreamingCompletion.send(http, base,
                new StreamingCompletion.Request(model, prompt, maxTokens, temperature, seed + i), Duration.ofSeconds(timeoutSeconds),
                StreamingCompletion.Progress.NONE);
        return new Sample(r.ttftNanos(), r.e2eNanos(), r.outputTokens());
    }

    private void print(PrintStream out, Report r, String model) {
        double ms = 1e-3;
        if (json) {
            ObjectNode o = JSON.createObjectNode();
            o.put("model", model);
            o.put("concurrency", concurrency);
            o.put("requests", requests);
            o.put("ok", r.ok());
            o.put("failed", requests - r.ok());
            ObjectNode f = o.putObject("failures");
            r.failures().forEach(f::put);
            o.put("prompt_tokens", promptTokens);
            o.put("max_tokens", maxTokens);
            o.put("seconds", r.seconds());
            o.put("requests_per_s", r.ok() / r.seconds());
            o.put("output_tokens_per_s", r.outputTokens() / r.seconds());
            o.put("output_tokens", r.outputTokens());
            putPercentiles(o, "ttft_ms", r.ttft());
            putPercentiles(o, "tpot_ms", r.tpot());
            putPercentiles(o, "e2e_ms", r.e2e());
            out.println(o);
            out.flush();
            return;
        }
        out.printf(Locale.ROOT, "loadgen: %s at %s: %d requests (%d ok, %d failed), concurrency %d, prompt %d tokens, "
                        + "%d output tokens each, %.2f s%n", model, url, requests, r.ok(), requests - r.ok(), concurrency,
                promptTokens, maxTokens, r.seconds());
        out.printf(Locale.ROOT, "  requests/s       %10.2f%n", r.ok() / r.seconds());
        out.printf(Locale.ROOT, "  output tokens/s  %10.1f%n", r.outputTokens() / r.seconds());
        out.printf(Locale.ROOT, "  %-16s %10s %10s %10s %10s%n", "latency (ms)", "p50", "p90", "p99", "mean");
        for (var h : new Object[][] {{"TTFT", r.ttft()}, {"TPOT", r.tpot()}, {"end-to-end", r.e2e()}}) {
            Histogram hist = (Histogram) h[1];
            if (hist.getTotalCount() == 0) {
                out.printf(Locale.ROOT, "  %-16s %10s %10s %10s %10s%n", h[0], "-", "-", "-", "-");
            } else {
                out.printf(Locale.ROOT, "  %-16s %10.2f %10.2f %10.2f %10.2f%n", h[0], hist.getValueAtPercentile(50) * ms,
                        hist.getValueAtPercentile(90) * ms, hist.getValueAtPercentile(99) * ms, hist.getMean() * ms);
            }
        }
        if (!r.failures().isEmpty()) {
            out.println("  failures:");
            r.failures().forEach((why, n) -> out.printf(Locale.ROOT, "    %6d  %s%n", n, why));
        }
        out.flush();
    }

    private static void putPercentiles(ObjectNode o, String name, Histogram h) {
        ObjectNode p = o.putObject(name);
        if (h.getTotalCount() == 0) {
            return;
        }
        p.put("p50", h.getValueAtPercentile(50) / 1e3);
        p.put("p90", h.getValueAtPercentile(90) / 1e3);
        p.put("p99", h.getValueAtPercentile(99) / 1e3);
        p.put("mean", h.getMean() / 1e3);
    }

    /** A progress bar on stderr, redrawn five times a second. */
    private static final class Progress implements AutoCloseable {
        private final PrintStream err;
        private final int total;
        private final AtomicInteger done;
        private final AtomicLong tokens;
        private final long start;
        private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "epserve-loadgen-progress");
            t.setDaemon(true);
            return t;
        });

        Progress(PrintStream err, int total, AtomicInteger done, AtomicLong tokens, long start) {
            this.err = err;
            this.total = total;
            this.done = done;
            this.tokens = tokens;
            this.start = start;
            timer.scheduleAtFixedRate(this::draw, 0, 200, TimeUnit.MILLISECONDS);
        }

        private synchronized void draw() {
            int d = done.get();
            int width = 30;
            int filled = (int) ((long) d * width / total);
            double s = Math.max(1e-3, (System.nanoTime() - start) / 1e9);
            err.printf(Locale.ROOT, "\r[%s%s] %d/%d requests · %.1f output tokens/s · %.0f s ", "#".repeat(filled),
                    " ".repeat(width - filled), d, total, tokens.get() / s, s);
            err.flush();
        }

        @Override
        public void close() {
            timer.shutdownNow();
            try {
                timer.awaitTermination(1, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            draw();
            err.println();
        }
    }
}
