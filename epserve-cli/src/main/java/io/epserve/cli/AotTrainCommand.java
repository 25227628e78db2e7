package io.epserve.cli;

import java.io.OutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * {@code epserve aot-train} (hidden): the training run of the JDK's ahead-of-time cache. The
 * launcher runs it once per build under {@code -XX:AOTCacheOutput}, so that later starts find
 * epserve's classes loaded and linked and its hot methods profiled (JEP 483, 514, 515) instead of
 * paying for it in the first requests. It runs what a cold start runs: the CLI, a model load, the
 * server with a completion, a streamed chat and /metrics, and {@code generate}, on the tiny demo
 * model so that it takes seconds.
 */
@Command(name = "aot-train", hidden = true, mixinStandardHelpOptions = true,
        description = "Training run for the ahead-of-time cache (the launcher runs it; nothing to do by hand).")
final class AotTrainCommand implements Callable<Integer> {

    @Override
    public Integer call() throws Exception {
        PrintStream quiet = new PrintStream(OutputStream.nullOutputStream());
        ServeCommand serve = new ServeCommand();
        new CommandLine(serve).parseArgs("--demo", "tiny", "--port", "0", "--host", "127.0.0.1");
        try (ServeCommand.Running running = serve.start(quiet, new TerminalProgress(System.err, false))) {
            URI base = running.server().baseUri();
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
            String model = running.served().id();
            for (int i = 0; i < 3; i++) {
                send(http, base.resolve("/v1/completions"), "{\"model\":\"" + model
                        + "\",\"prompt\":\"Experts of a mixture, routed and combined.\",\"max_tokens\":24,\"temperature\":0}");
                send(http, base.resolve("/v1/chat/completions"), "{\"model\":\"" + model
                        + "\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":24,\"stream\":true,\"seed\":" + i + "}");
            }
            HttpResponse<String> metrics = http.send(HttpRequest.newBuilder(base.resolve("/metrics")).timeout(Duration.ofSeconds(30))
                    .build(), HttpResponse.BodyHandlers.ofString());
            check(metrics, "/metrics");
        }
        int generated = Main.run("generate", "--demo", "tiny", "--tokens", "1,2,3,4,5,6,7,8", "--max-tokens", "32",
                "--temperature", "0", "--ignore-eos");
        if (generated != 0) {
            throw new IllegalStateException("the training run's generate exited with " + generated);
        }
        return 0;
    }

    private static void send(HttpClient http, URI uri, String body) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(60)).header("content-type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build();
        check(http.send(req, HttpResponse.BodyHandlers.ofString()), uri.getPath());
    }

    private static void check(HttpResponse<String> r, String what) {
        if (r.statusCode() != 200) {
            throw new IllegalStateException("the training run's " + what + " answered " + r.statusCode() + ": " + r.body());
        }
    }
}
