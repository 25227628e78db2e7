package io.epserve.deploy;

import io.epserve.cli.Main;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Expert workers and a frontend serving a fixture model through them, as real processes of this
 * build's CLI ({@code epserve worker}, {@code epserve serve --workers}), for tests that scrape
 * what a deployment exposes. Closing it stops both.
 */
final class EpserveCluster implements AutoCloseable {
    static final Path FIXTURES = Path.of(System.getProperty("epserve.fixtures", "../../shared/fixtures"));
    private static final Duration START = Duration.ofSeconds(120);

    private final List<RunningProcess> workers;
    private final RunningProcess frontend;
    private final List<String> workerAddresses;
    private final URI base;

    private EpserveCluster(List<RunningProcess> workers, List<String> workerAddresses, RunningProcess frontend, URI base) {
        this.workers = workers;
        this.workerAddresses = workerAddresses;
        this.frontend = frontend;
        this.base = base;
    }

    /** Starts {@code n} workers, then a frontend that spreads the experts over them, on the {@code mixtral} fixture; returns once all serve. */
    static EpserveCluster start(int n) throws IOException, InterruptedException {
        String model = FIXTURES.resolve("mixtral/model").toAbsolutePath().normalize().toString();
        List<RunningProcess> workers = new ArrayList<>();
        List<String> addresses = new ArrayList<>();
        RunningProcess frontend = null;
        try {
            for (int i = 0; i < n; i++) {
                workers.add(RunningProcess.start("epserve worker " + i, cli("worker", "--listen", "127.0.0.1:0", "--model", model)));
            }
            for (RunningProcess w : workers) {
                addresses.add(w.awaitLine(Pattern.compile("listening on (\\S+:\\d+)"), START).group(1));
            }
            frontend = RunningProcess.start("epserve serve",
                    cli("serve", "--model", model, "--workers", String.join(",", addresses), "--port", "0", "--kv-memory", "16MiB"));
            URI base = URI.create(frontend.awaitLine(Pattern.compile("metrics:\\s+(http://\\S+)/metrics"), START).group(1) + "/");
            return new EpserveCluster(workers, addresses, frontend, base);
        } catch (IOException | AssertionError | RuntimeException | InterruptedException e) {
            closeAll(frontend, workers);
            throw e;
        }
    }

    private static ProcessBuilder cli(String... args) {
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx512m",
                "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        return new ProcessBuilder(cmd);
    }

    /** The frontend's base URL, e.g. {@code http://127.0.0.1:41234/}. */
    URI base() {
        return base;
    }

    /** The frontend's address as Prometheus targets it ({@code host:port}). */
    String frontendTarget() {
        return base.getHost() + ":" + base.getPort();
    }

    /** The workers' {@code host:port}, as the frontend's per-worker series label them. */
    List<String> workerAddresses() {
        return workerAddresses;
    }

    /** One greedy completion of a few tokens, so request, latency and expert-load series have samples. */
    void complete() throws IOException, InterruptedException {
        Http.postJson(base.resolve("v1/completions"), "{\"model\":\"model\",\"prompt\":\"hello\",\"max_tokens\":4,\"temperature\":0}");
    }

    String metrics() throws IOException, InterruptedException {
        return Http.get(base.resolve("metrics"));
    }

    @Override
    public void close() throws InterruptedException {
        closeAll(frontend, workers);
    }

    private static void closeAll(RunningProcess frontend, List<RunningProcess> workers) throws InterruptedException {
        if (frontend != null) {
            frontend.close();
        }
        for (RunningProcess w : workers) {
            w.close();
        }
    }
}
