package io.epserve.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.Iterator;
import java.util.Objects;
import java.util.concurrent.Executors;
import java.util.stream.IntStream;
import java.util.stream.Stream;

/**
 * One streaming completion ({@code POST /v1/completions}, {@code stream: true}) of an
 * OpenAI-compatible server, read event by event as a client reads it: the prompt as token ids
 * (so its length is exact), exactly {@code max_tokens} tokens ({@code ignore_eos}, an extension
 * epserve and vLLM honour), the usage in the last chunk, and — where the server returns them
 * ({@code return_token_ids}, epserve and vLLM) — the generated token ids, so that two runs can be
 * compared token for token. Used by {@code loadgen}, {@code bench failover} and the process tests.
 */
final class StreamingCompletion {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What to ask for; {@code seed} is the request's sampler seed (irrelevant at temperature 0). */
    record Request(String model, int[] prompt, int maxTokens, double temperature, long seed) {
        Request {
            Objects.requireNonNull(model, "model");
            Objects.requireNonNull(prompt, "prompt");
        }
    }

    /**
     * A finished request: time to first token and end to end (nanoseconds from the send), the
     * output tokens the usage counted (else the text chunks), and the generated ids.
     */
    record Result(long ttftNanos, long e2eNanos, int outputTokens, int[] tokenIds) {}

    /** Told after each chunk that carried text: how many chunks with text so far. */
    @FunctionalInterface
    interface Progress {
        Progress NONE = chunks -> { };

        void chunk(int chunksSoFar);
    }

    /** A failed request, named by its cause (reports group failures by message). */
    static final class Failure extends Exception {
        Failure(String message) {
            super(message, null, false, false);
        }
    }

    private StreamingCompletion() {}

    /** An HTTP/1.1 client on virtual threads, as the load generators use. */
    static HttpClient newClient() {
        return HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).version(HttpClient.Version.HTTP_1_1)
                .executor(Executors.newVirtualThreadPerTaskExecutor()).build();
    }

    /**
     * Sends {@code r} to {@code base} (the server's root URI, ending in /) and reads its stream to
     * {@code [DONE]}; any error (connection, HTTP status, an error event, a stream cut short, the
     * timeout) is a {@link Failure} naming it.
     */
    static Result send(HttpClient http, URI base, Request r, Duration timeout, Progress progress) throws Failure {
        ObjectNode body = JSON.createObjectNode();
        body.put("model", r.model());
        ArrayNode prompt = body.putArray("prompt");
        for (int t : r.prompt()) {
            prompt.add(t);
        }
        body.put("max_tokens", r.maxTokens());
        body.put("temperature", r.temperature());
        body.put("seed", r.seed());
        body.put("stream", true);
        body.put("ignore_eos", true);
        body.put("return_token_ids", true);
        body.putObject("stream_options").put("include_usage", true);
        HttpRequest req;
        try {
            req = HttpRequest.newBuilder(base.resolve("v1/completions")).timeout(timeout).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofByteArray(JSON.writeValueAsBytes(body))).build();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        long t0 = System.nanoTime();
        HttpResponse<Stream<String>> resp;
        try {
            resp = http.send(req, HttpResponse.BodyHandlers.ofLines());
        } catch (IOException e) {
            throw new Failure(describe(e));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted");
        }
        long first = -1;
        int chunks = 0;
        int usageTokens = -1;
        boolean finished = false;
        IntStream.Builder ids = IntStream.builder();
        try (Stream<String> lines = resp.body()) {
            if (resp.statusCode() != 200) {
                throw new Failure("HTTP " + resp.statusCode() + errorMessage(lines));
            }
            Iterator<String> it = lines.iterator();
            while (it.hasNext()) {
                String line = it.next();
                if (!line.startsWith("data: ")) {
                    continue;
                }
                String data = line.substring(6);
                if (data.equals("[DONE]")) {
                    finished = true;
                    break;
                }
                JsonNode chunk = JSON.readTree(data);
                if (chunk.has("error")) {
                    throw new Failure("stream error: " + chunk.get("error").path("message").asText());
                }
                boolean text = false;
                for (JsonNode c : chunk.path("choices")) {
                    for (JsonNode id : c.path("token_ids")) {
                        ids.add(id.asInt());
                    }
                    if (!c.path("text").asText().isEmpty()) {
                        if (first < 0) {
                            first = System.nanoTime();
                        }
                        chunks++;
                        text = true;
                    }
                }
                if (chunk.hasNonNull("usage")) {
                    usageTokens = chunk.get("usage").path("completion_tokens").asInt();
                }
                if (text) {
                    progress.chunk(chunks);
                }
            }
        } catch (IOException | UncheckedIOException e) {
            throw new Failure(describe(e));
        }
        long end = System.nanoTime();
        if (!finished) {
            throw new Failure("stream ended without [DONE]");
        }
        if (first < 0) {
            first = end;
        }
        return new Result(first - t0, end - t0, usageTokens >= 0 ? usageTokens : chunks, ids.build().toArray());
    }

    /** ": " and the message of an OpenAI-style error body, or "" when the body is not one. */
    private static String errorMessage(Stream<String> body) {
        try {
            String m = JSON.readTree(String.join("\n", body.toList())).path("error").path("message").asText("");
            return m.isEmpty() ? "" : ": " + (m.length() > 200 ? m.substring(0, 200) + "…" : m);
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }

    static String describe(Exception e) {
        if (e instanceof HttpTimeoutException) {
            return "timed out";
        }
        if (e instanceof ConnectException || e.getCause() instanceof ConnectException) {
            return "connection refused";
        }
        return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
    }
}
