package io.epserve.format.gguf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** ../shared/fixtures/gguf: GGUF files written by llama.cpp's tools and its reference values (see its README). */
public final class GgufFixtures {
    private GgufFixtures() {}

    public static Path dir() {
        String p = System.getProperty("epserve.fixtures");
        Path root = p != null ? Path.of(p) : Path.of("../../shared/fixtures");
        if (!Files.isDirectory(root)) {
            root = Path.of("../shared/fixtures");
        }
        return root.resolve("gguf").toAbsolutePath().normalize();
    }

    public static JsonNode reference() {
        try {
            return new ObjectMapper().readTree(dir().resolve("reference.json").toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The shipped GGUF file names, as reference.json lists them. */
    public static List<String> files() {
        List<String> out = new ArrayList<>();
        reference().get("files").fieldNames().forEachRemaining(out::add);
        return out;
    }
}
