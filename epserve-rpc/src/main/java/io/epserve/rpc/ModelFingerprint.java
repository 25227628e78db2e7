package io.epserve.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.Checkpoint;
import io.epserve.format.gguf.GgufModel;
import io.epserve.tensor.DType;
import io.epserve.tensor.QuantizedActivations;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;

/**
 * Which model a process runs, comparable across hosts without naming a path: the architecture,
 * a SHA-256 of config.json, how products over quantized weights treat their activations (the
 * process's {@link QuantizedActivations}: two schemes give different bits), and the dtype the routed
 * experts are held in. A frontend and its workers must agree on it (the same model directory may sit
 * at different paths on each host); the wire form is
 * {@code <architecture>;config-sha256=<hex>;quant-activations=<int8|f32>;experts=<dtype or stored>}.
 */
public record ModelFingerprint(String architecture, String configSha256, String quantActivations, String experts) {
    public ModelFingerprint {
        if (architecture.isBlank() || configSha256.isBlank() || quantActivations.isBlank() || experts.isBlank()) {
            throw new IllegalArgumentException(
                    "a model fingerprint needs an architecture, a config hash, a quantized-activation scheme and an expert dtype");
        }
    }

    /**
     * The fingerprint of the model in {@code dir} with routed experts in {@code expertDType} (null:
     * as stored), under this process's quantized-activation scheme.
     */
    public static ModelFingerprint of(Path dir, DType expertDType) {
        return of(dir, expertDType, QuantizedActivations.configured());
    }

    /** The fingerprint under a given quantized-activation scheme. */
    static ModelFingerprint of(Path dir, DType expertDType, QuantizedActivations activations) {
        Path config = dir.resolve("config.json");
        byte[] bytes;
        try {
            // a GGUF model's config.json is the one its metadata gives
            bytes = GgufModel.isGguf(dir) ? Checkpoint.readConfig(dir).toString().getBytes(StandardCharsets.UTF_8)
                    : Files.readAllBytes(config);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException(dir + " has no config.json", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + config + ": " + e.getMessage(), e);
        }
        String arch;
        try {
            JsonNode c = new ObjectMapper().readTree(bytes);
            JsonNode archs = c.path("architectures");
            arch = archs.isArray() && !archs.isEmpty() ? archs.get(0).asText() : c.path("model_type").asText("unknown");
        } catch (IOException e) {
            throw new IllegalArgumentException(config + " is not JSON: " + e.getMessage(), e);
        }
        try {
            String hash = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
            return new ModelFingerprint(arch.isBlank() ? "unknown" : arch, hash, activations.label(),
                    expertDType == null ? "stored" : expertDType.label().toLowerCase(Locale.ROOT));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("this JVM has no SHA-256", e);
        }
    }

    @Override
    public String toString() {
        return architecture + ";config-sha256=" + configSha256 + ";quant-activations=" + quantActivations + ";experts=" + experts;
    }
}
