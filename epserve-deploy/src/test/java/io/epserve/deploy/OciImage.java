package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * An OCI image layout tarball, read the way a container runtime reads it: index → manifest →
 * config and layers, every blob checked against its digest and size, the layers applied in order
 * to an empty root file system.
 *
 * @param rootfs the unpacked file system
 * @param config the image configuration's {@code config} object (Entrypoint, Env, User, WorkingDir)
 * @param refName the index's {@code org.opencontainers.image.ref.name}
 */
record OciImage(Path rootfs, JsonNode config, String refName, List<String> layerMediaTypes) {
    private static final ObjectMapper JSON = new ObjectMapper();

    static OciImage unpack(Path tarball, Path work) throws IOException, InterruptedException {
        Path layout = Files.createDirectories(work.resolve("layout"));
        Path rootfs = Files.createDirectories(work.resolve("rootfs"));
        tar(layout, "-xf", tarball.toString());
        assertThat(JSON.readTree(layout.resolve("oci-layout").toFile()).path("imageLayoutVersion").asText()).isEqualTo("1.0.0");
        JsonNode index = JSON.readTree(layout.resolve("index.json").toFile());
        assertThat(index.path("manifests").size()).as("manifests in index.json").isEqualTo(1);
        JsonNode descriptor = index.path("manifests").get(0);
        assertThat(descriptor.path("mediaType").asText()).isEqualTo("application/vnd.oci.image.manifest.v1+json");
        JsonNode manifest = JSON.readTree(blob(layout, descriptor).toFile());
        JsonNode config = JSON.readTree(blob(layout, manifest.path("config")).toFile());
        assertThat(config.path("os").asText()).isEqualTo("linux");
        assertThat(config.path("architecture").asText()).isEqualTo("amd64");
        List<String> mediaTypes = new ArrayList<>();
        for (JsonNode layer : manifest.path("layers")) {
            mediaTypes.add(layer.path("mediaType").asText());
            tar(rootfs, "-xzf", blob(layout, layer).toString());
        }
        assertThat(config.path("rootfs").path("diff_ids").size()).as("diff_ids vs layers").isEqualTo(mediaTypes.size());
        return new OciImage(rootfs, config.path("config"),
                descriptor.path("annotations").path("org.opencontainers.image.ref.name").asText(), mediaTypes);
    }

    /** The blob a descriptor names, after checking its size and SHA-256. */
    private static Path blob(Path layout, JsonNode descriptor) throws IOException {
        String digest = descriptor.path("digest").asText();
        assertThat(digest).startsWith("sha256:");
        Path file = layout.resolve("blobs/sha256").resolve(digest.substring("sha256:".length()));
        assertThat(Files.size(file)).as("size of %s", digest).isEqualTo(descriptor.path("size").asLong());
        assertThat("sha256:" + sha256(file)).as("content of %s", digest).isEqualTo(digest);
        return file;
    }

    private static String sha256(Path file) throws IOException {
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        try (InputStream in = new DigestInputStream(Files.newInputStream(file), sha)) {
            in.transferTo(OutputStream.nullOutputStream());
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    private static void tar(Path into, String mode, String archive) throws IOException, InterruptedException {
        // Jib writes libarchive's creation-time headers, which GNU tar does not know: not worth a warning each.
        Process p = new ProcessBuilder("tar", "--warning=no-unknown-keyword", "-C", into.toString(), mode, archive)
                .redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor()).as("tar %s %s: %s", mode, archive, out).isZero();
    }

    List<String> entrypoint() {
        return strings(config.path("Entrypoint"));
    }

    List<String> env() {
        return strings(config.path("Env"));
    }

    private static List<String> strings(JsonNode array) {
        List<String> out = new ArrayList<>();
        array.forEach(n -> out.add(n.asText()));
        return out;
    }
}
