package io.epserve.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * The golden fixtures of ../shared/fixtures (see its README), and those made here in the same
 * format by tools/goldens/make_arch_fixtures.py (src/test/resources/fixtures).
 */
public final class Fixtures {
    private Fixtures() {}

    public static final List<String> MODELS = List.of("mixtral", "mixtral_f32", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3");

    /** The fixtures of this repository (architectures added after ../shared/fixtures). */
    public static final List<String> LOCAL_MODELS = List.of("deepseek_v2", "deepseek_v2_lite", "gpt_oss");

    static Path local() {
        return Path.of("src/test/resources/fixtures").toAbsolutePath().normalize();
    }

    /** Where a fixture's folder is: this repository's or the shared one. */
    static Path dirOf(String name) {
        Path l = local().resolve(name);
        return Files.isDirectory(l) ? l : root().resolve(name);
    }

    public static Path root() {
        String p = System.getProperty("epserve.fixtures");
        Path dir = p != null ? Path.of(p) : Path.of("../../shared/fixtures");
        if (!Files.isDirectory(dir)) {
            dir = Path.of("../shared/fixtures");
        }
        return dir.toAbsolutePath().normalize();
    }

    public static Path model(String name) {
        return dirOf(name).resolve("model");
    }

    /** A copy of a fixture's model folder in {@code dir} (a converted-experts cache must not land in the shared fixtures). */
    public static Path copyModel(String name, Path dir) throws IOException {
        Path dst = dir.resolve(name);
        Files.createDirectories(dst);
        try (Stream<Path> s = Files.list(model(name))) {
            for (Path p : s.toList()) {
                Files.copy(p, dst.resolve(p.getFileName()));
            }
        }
        return dst;
    }

    public static JsonNode expected(String name) {
        try {
            return new ObjectMapper().readTree(Files.readString(dirOf(name).resolve("expected.json")));
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    public static int[] ints(JsonNode arr) {
        int[] r = new int[arr.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = arr.get(i).asInt();
        }
        return r;
    }
}
