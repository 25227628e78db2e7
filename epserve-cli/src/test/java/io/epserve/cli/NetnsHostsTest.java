package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.assertj.core.api.InstanceOfAssertFactories;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * A frontend and two expert workers as three hosts: network namespaces on a private bridge
 * (tools/netns-hosts.sh), each worker listening on its own host's address with a shared secret,
 * the network shaped with tc. Runs as root (CI); skipped with the reason otherwise. Cleans up its namespaces after
 * the class, and from a shutdown hook if the JVM is stopped first.
 *
 * <p>Every frontend here uses {@code --transport grpc}: the namespaces share this kernel (one boot id,
 * one /dev/shm), so the default would hand the steps over shared memory, past the network under test.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class NetnsHostsTest {
    private static final Path SCRIPT = Path.of("../tools/netns-hosts.sh").toAbsolutePath().normalize();
    /** Short and unique per run: interface names are at most 15 characters. */
    private static final String NAME = "ept" + ProcessHandle.current().pid() % 100_000;
    private static final String FRONTEND = NAME + "-0";
    private static final List<String> WORKERS = List.of("10.213.0.11:7070", "10.213.0.12:7070");
    private static final int[] PROMPT = {1, 2, 3, 4, 5};
    /** (one-way delay µs, rate Mbit/s) per setting; 0 = not shaped. */
    private static final int[][] SETTINGS = {{50, 10_000}, {500, 1_000}};

    private static final List<Process> started = new ArrayList<>();
    // stream readers block for a process's whole life: never on the common pool (one thread on 2 cores)
    private static final ExecutorService READERS = Executors.newVirtualThreadPerTaskExecutor();
    private static Thread cleanupHook;
    private static Path model;
    /** The workers' shared secret: a worker refuses to listen beyond loopback without one. */
    private static Path secret;

    @BeforeAll
    static void hosts() throws Exception {
        assumeTrue(System.getProperty("os.name").toLowerCase(Locale.ROOT).contains("linux"), "network namespaces need Linux");
        assumeTrue(Files.isExecutable(SCRIPT), SCRIPT + " is missing");
        assumeTrue("0".equals(run(List.of("id", "-u"), Duration.ofSeconds(10)).out().strip()),
                "network namespaces need root (CAP_NET_ADMIN); CI runs as root");
        Outcome probe = run(List.of("ip", "netns", "add", NAME + "-probe"), Duration.ofSeconds(10));
        run(List.of("ip", "netns", "del", NAME + "-probe"), Duration.ofSeconds(10));
        assumeTrue(probe.code() == 0, "cannot create a network namespace here: " + probe.err().strip());
        model = CliRunner.fixtures().resolve("mixtral/model");
        secret = Files.createTempFile("netns-secret", ".txt");
        Files.writeString(secret, "netns-test-" + Long.toHexString(new SecureRandom().nextLong()) + "-secret\n");
        cleanupHook = new Thread(NetnsHostsTest::cleanup);
        Runtime.getRuntime().addShutdownHook(cleanupHook);
        script("down", NAME);
        Outcome up = script("up", NAME, "3");
        assertThat(up.code()).as(up.err()).isZero();
        for (int i = 0; i < WORKERS.size(); i++) {
            startWorker(NAME + "-" + (i + 1), WORKERS.get(i));
        }
    }

    @AfterAll
    static void tearDown() {
        if (cleanupHook != null) {
            cleanup();
            Runtime.getRuntime().removeShutdownHook(cleanupHook);
        }
    }

    /** Stops every process this test started, then removes the namespaces, links and bridge. */
    private static synchronized void cleanup() {
        for (Process p : started) {
            p.destroyForcibly();
        }
        for (Process p : started) {
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        started.clear();
        try {
            script("down", NAME);
            if (secret != null) {
                Files.deleteIfExists(secret);
            }
        } catch (Exception e) {
            System.err.println("netns cleanup of " + NAME + " failed: " + e);
        }
    }

    @Test
    @Order(1)
    void outputsEqualTheSingleProcessRun() throws Exception {
        JsonNode single = generate(false, List.of());
        for (boolean overlap : new boolean[] {false, true}) {
            JsonNode remote = generate(true, overlap ? List.of("--overlap") : List.of());
            assertThat(remote.get("generated")).as("overlap %s", overlap).isEqualTo(single.get("generated"));
        }
        assertThat(single.get("generated").size()).isEqualTo(16);
    }

    @Test
    @Order(2)
    void throughputAndStepTimePerNetworkSetting() throws Exception {
        StringBuilder table = new StringBuilder("setting\tdelay\trate\toverlap\tsingle batch t/s\tremote batch t/s\tremote step ms\tdecode t/s\n");
        Pattern rowPattern = Pattern.compile("^(single process|2 workers, remote) +(off|on) +([0-9.]+) +([0-9.]+) +([0-9.]+) +(\\S+)$",
                Pattern.MULTILINE);
        int batch = 8;
        for (int[] s : SETTINGS) {
            awaitWorkersFree();
            Outcome shaped = script("shape", NAME, String.valueOf(s[0]), String.valueOf(s[1]));
            assertThat(shaped.code()).as(shaped.err()).isZero();
            assertThat(shaped.out()).contains("rate=applied");
            String delay = shaped.out().contains("delay=applied") ? s[0] + " µs" : "not applied (kernel without sch_netem)";
            Outcome o = epserve(FRONTEND, Duration.ofMinutes(5), "bench", "ep", "--model", model.toString(), "--workers", String.join(",", WORKERS), "--transport", "grpc",
                    "--worker-secret-file", secret.toString(), "--no-validate", "--runs", "1", "--prompt-tokens", "8", "--gen-tokens", "8", "--batch", String.valueOf(batch),
                    "--warmup-seconds", "1");
            assertThat(o.code()).as(o.err()).isZero();
            Matcher m = rowPattern.matcher(o.out());
            double[] single = new double[2];
            double[][] remote = new double[2][];
            while (m.find()) {
                int ov = m.group(2).equals("on") ? 1 : 0;
                if (m.group(1).equals("single process")) {
                    single[ov] = Double.parseDouble(m.group(5));
                } else {
                    remote[ov] = new double[] {Double.parseDouble(m.group(5)), Double.parseDouble(m.group(4))};
                }
            }
            for (int ov = 0; ov < 2; ov++) {
                assertThat(remote[ov]).as("2 workers, remote, overlap %d in:%n%s", ov, o.out()).isNotNull();
                assertThat(remote[ov][0]).isPositive();
                table.append(String.format(Locale.ROOT, "%d µs / %d Mbit\t%s\t%d Mbit\t%s\t%.1f\t%.1f\t%.1f\t%.1f%n", s[0], s[1], delay, s[1],
                        ov == 1 ? "on" : "off", single[ov], remote[ov][0], batch * 1e3 / remote[ov][0], remote[ov][1]));
            }
        }
        System.out.print(table);
        Path figures = Path.of("target", "netns-figures.tsv");
        Files.createDirectories(figures.getParent());
        Files.writeString(figures, table);
    }

    @Test
    @Order(3)
    void aHostCutOffIsTakenOverByTheFrontendNamingTheWorker() throws Exception {
        script("shape", NAME, "0", "0");
        awaitWorkersFree();
        // long enough for a worker on a loaded 2-core machine to answer the connection check, short enough to wait for
        int timeoutMs = 8000;
        int tokens = 600;
        ProcessBuilder pb = new ProcessBuilder(command(FRONTEND, "generate", "--model", model.toString(), "--workers", String.join(",", WORKERS), "--transport", "grpc",
                "--worker-secret-file", secret.toString(), "--tokens", "1,2,3", "--max-tokens", String.valueOf(tokens), "--temperature", "0",
                "--ignore-eos", "--json", "--worker-timeout", String.valueOf(timeoutMs)));
        pb.redirectErrorStream(false);
        Process p = start(pb);
        // stderr line by line: the cut comes once the workers are assigned, i.e. as the generation starts
        CompletableFuture<Void> assigned = new CompletableFuture<>();
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> {
            StringBuilder all = new StringBuilder();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getErrorStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    all.append(line).append('\n');
                    if (line.startsWith("epserve: expert workers assigned")) {
                        assigned.complete(null);
                    }
                }
            } catch (IOException e) {
                // the process ended
            }
            assigned.complete(null);
            return all.toString();
        }, READERS);
        CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()), READERS);
        assigned.get(120, TimeUnit.SECONDS);
        assertThat(p.isAlive()).as("the generation runs when the host is cut off").isTrue();
        long cutAt = System.nanoTime();
        Outcome cut = script("cut", NAME, "2");
        assertThat(cut.code()).as(cut.err()).isZero();
        boolean ended = p.waitFor(timeoutMs + 120_000, TimeUnit.MILLISECONDS);
        double seconds = (System.nanoTime() - cutAt) / 1e9;
        assertThat(ended).as("the generation ended within the worker deadline plus 2 minutes").isTrue();
        String stderr = err.get(10, TimeUnit.SECONDS);
        // nothing is lost: the frontend computes the cut-off worker's experts, and says so naming it
        assertThat(p.exitValue()).as(stderr).isZero();
        assertThat(new ObjectMapper().readTree(out.get(10, TimeUnit.SECONDS)).get("generated")).hasSize(tokens);
        assertThat(stderr.lines().filter(l -> l.startsWith("epserve: the frontend computes the experts itself")))
                .singleElement(InstanceOfAssertFactories.STRING).contains(WORKERS.get(1));
        System.out.printf(Locale.ROOT, "host cut off: generation of %d tokens completed %.1f s after the cut (worker timeout %d ms)%n",
                tokens, seconds, timeoutMs);
    }

    /**
     * A worker serves one frontend at a time and frees itself when that frontend's lease (3 s here)
     * runs out: a one-token generation is retried until the workers take it, for at most a minute.
     */
    private static void awaitWorkersFree() throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        Outcome last;
        do {
            last = epserve(FRONTEND, Duration.ofMinutes(2), "generate", "--model", model.toString(), "--workers", String.join(",", WORKERS), "--transport", "grpc",
                    "--worker-secret-file", secret.toString(), "--tokens", "1", "--max-tokens", "1", "--temperature", "0", "--json");
            if (last.code() == 0) {
                return;
            }
        } while (System.nanoTime() - deadline < 0);
        throw new AssertionError("the workers did not take a new frontend within 60 s: " + last.err());
    }

    private JsonNode generate(boolean remote, List<String> extra) throws Exception {
        List<String> args = new ArrayList<>(List.of("generate", "--model", model.toString(), "--tokens", join(PROMPT), "--max-tokens", "16",
                "--temperature", "0", "--ignore-eos", "--json"));
        if (remote) {
            awaitWorkersFree();
            args.addAll(List.of("--workers", String.join(",", WORKERS), "--transport", "grpc", "--worker-secret-file", secret.toString()));
        }
        args.addAll(extra);
        Outcome o = epserve(FRONTEND, Duration.ofMinutes(3), args.toArray(String[]::new));
        assertThat(o.code()).as(o.err()).isZero();
        return new ObjectMapper().readTree(o.out());
    }

    private static void startWorker(String ns, String listen) throws Exception {
        // frontends run one after another here: a short lease lets the next take the worker soon after the last one is gone
        Process p = start(new ProcessBuilder(command(ns, "worker", "--listen", listen, "--model", model.toString(), "--auth-secret-file",
                secret.toString(), "--lease-timeout", "3")).redirectErrorStream(true));
        CompletableFuture<Boolean> ready = CompletableFuture.supplyAsync(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.startsWith("epserve worker listening on ")) {
                        return true;
                    }
                }
                return false;
            } catch (IOException e) {
                return false;
            }
        });
        assertThat(ready.get(120, TimeUnit.SECONDS)).as("worker in %s listening on %s", ns, listen).isTrue();
        // keep draining its output so that it never blocks on a full pipe
        CompletableFuture.runAsync(() -> readAll(p.getInputStream()), READERS);
    }

    private static synchronized Process start(ProcessBuilder pb) throws IOException {
        pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        Process p = pb.start();
        started.add(p);
        return p;
    }

    /** {@code ip netns exec NS java ... Main args}: the CLI of this build inside a namespace. */
    private static List<String> command(String ns, String... args) {
        List<String> cmd = new ArrayList<>(List.of("ip", "netns", "exec", ns, ProcessHandle.current().info().command().orElse("java"),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx512m", "-cp",
                System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        return cmd;
    }

    private static Outcome epserve(String ns, Duration limit, String... args) throws Exception {
        return run(command(ns, args), limit);
    }

    private static Outcome script(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("bash", SCRIPT.toString()));
        cmd.addAll(List.of(args));
        return run(cmd, Duration.ofSeconds(60));
    }

    record Outcome(int code, String out, String err) {}

    private static Outcome run(List<String> cmd, Duration limit) throws Exception {
        Process p = start(new ProcessBuilder(cmd));
        CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> readAll(p.getInputStream()), READERS);
        CompletableFuture<String> err = CompletableFuture.supplyAsync(() -> readAll(p.getErrorStream()), READERS);
        try {
            if (!p.waitFor(limit.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError(String.join(" ", cmd) + " did not finish within " + limit);
            }
            return new Outcome(p.exitValue(), out.get(10, TimeUnit.SECONDS), err.get(10, TimeUnit.SECONDS));
        } finally {
            p.destroyForcibly();
            synchronized (NetnsHostsTest.class) {
                started.remove(p);
            }
        }
    }

    private static String readAll(InputStream in) {
        try {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            return "";
        }
    }

    private static String join(int[] ids) {
        return String.join(",", Arrays.stream(ids).mapToObj(String::valueOf).toList());
    }
}
