package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.cli.Main;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.regex.Pattern;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The image the build wrote (target/epserve-image.tar) unpacked layer by layer and run as a
 * container runtime would: the CLI's help, a capacity plan from a fixture's config.json, and an
 * expert worker with a frontend serving a completion, all inside the image's file system and as
 * its non-root user. Proves the jlink runtime has the modules and the image the libraries epserve needs.
 */
class ImageIT {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Path FIXTURES = EpserveCluster.FIXTURES;

    @TempDir
    static Path work;
    static OciImage image;
    static ImageContainer container;

    @BeforeAll
    static void unpack() throws Exception {
        Path tarball = Path.of(System.getProperty("epserve.image.tar", "target/epserve-image.tar"));
        assertThat(tarball).as("the image tarball (built by jib:buildTar in the package phase)").isRegularFile();
        image = OciImage.unpack(tarball, work);
        container = new ImageContainer(image);
    }

    @Test
    void configurationRunsTheCliAsANonRootUser() {
        assertThat(image.refName()).startsWith("epserve:");
        assertThat(image.layerMediaTypes()).isNotEmpty().allMatch("application/vnd.oci.image.layer.v1.tar+gzip"::equals);
        assertThat(image.entrypoint()).first().isEqualTo("java");
        assertThat(image.entrypoint()).contains("jdk.incubator.vector").last().isEqualTo(Main.class.getName());
        assertThat(image.env()).contains("PATH=/opt/java/bin");
        assertThat(image.config().path("User").asText()).isEqualTo("65532:65532");
        assertThat(image.rootfs().resolve("opt/java/bin/java")).isExecutable();
        assertThat(image.rootfs().resolve("bin")).as("no shell or other tools in the image").doesNotExist();
    }

    @Test
    void helpRunsInsideTheImage() throws Exception {
        try (RunningProcess p = RunningProcess.start("epserve --help", container.command("--help"))) {
            assertThat(p.awaitExit(Duration.ofSeconds(120))).as(p.output()).isZero();
            assertThat(p.output()).contains("Usage: epserve").contains("serve").contains("worker").contains("plan");
        }
    }

    @Test
    void planInsideTheImageEqualsThePlanOutside() throws Exception {
        Path config = Files.createDirectories(image.rootfs().resolve("tmp/mixtral")).resolve("config.json");
        Files.copy(FIXTURES.resolve("mixtral/model/config.json"), config);
        String[] options = {"--workers", "2", "--memory-per-worker", "1GiB", "--json"};
        String inside;
        try (RunningProcess p = RunningProcess.start("epserve plan", container.command(concat(
                new String[] {"plan", "--model", "/tmp/mixtral/config.json"}, options)))) {
            assertThat(p.awaitExit(Duration.ofSeconds(120))).as(p.output()).isZero();
            inside = p.output();
        }
        JsonNode plan = JSON.readTree(inside.substring(inside.indexOf('{')));
        assertThat(plan.path("total_params").asLong()).isPositive();
        assertThat(plan.path("workers").size()).isEqualTo(2);
        JsonNode outside = JSON.readTree(runHere(concat(new String[] {"plan", "--model", config.toString()}, options)));
        // the same file, seen at its path inside and outside the image
        assertThat(((ObjectNode) plan.path("model")).remove("source").asText()).isEqualTo("/tmp/mixtral/config.json");
        ((ObjectNode) outside.path("model")).remove("source");
        assertThat(plan).isEqualTo(outside);
    }

    @Test
    void workerAndFrontendServeFromTheImage() throws Exception {
        Path model = Files.createDirectories(image.rootfs().resolve("models/mixtral"));
        try (var files = Files.list(FIXTURES.resolve("mixtral/model"))) {
            for (Path f : files.toList()) {
                Files.copy(f, model.resolve(f.getFileName()));
            }
        }
        try (RunningProcess worker = RunningProcess.start("epserve worker",
                container.command("worker", "--listen", "127.0.0.1:0", "--model", "/models/mixtral"))) {
            String address = worker.awaitLine(Pattern.compile("listening on (\\S+:\\d+)"), Duration.ofSeconds(120)).group(1);
            try (RunningProcess frontend = RunningProcess.start("epserve serve", container.command("serve", "--model", "/models/mixtral",
                    "--workers", address, "--port", "0", "--kv-memory", "16MiB"))) {
                URI api = URI.create(frontend.awaitLine(Pattern.compile("API:\\s+(http://\\S+)"), Duration.ofSeconds(120)).group(1) + "/");
                JsonNode done = JSON.readTree(Http.postJson(api.resolve("completions"),
                        "{\"model\":\"mixtral\",\"prompt\":\"hello\",\"max_tokens\":4,\"temperature\":0}"));
                assertThat(done.path("usage").path("completion_tokens").asInt()).isEqualTo(4);
                String metrics = Http.get(api.resolve("/metrics"));
                assertThat(metrics).containsPattern("epserve_worker_calls_total\\{worker=\"" + Pattern.quote(address) + "\"} [1-9]");
            }
        }
    }

    private static String runHere(String... args) {
        PrintStream old = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            assertThat(Main.run(args)).isZero();
        } finally {
            System.setOut(old);
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private static String[] concat(String[] a, String[] b) {
        String[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }
}
