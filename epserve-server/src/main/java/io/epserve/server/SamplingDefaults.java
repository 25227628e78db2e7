package io.epserve.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What a request that leaves a sampling field out gets: the model's generation_config.json when
 * it samples ({@code do_sample} not false), else temperature 1, no top-k/top-p (as vLLM does).
 */
public record SamplingDefaults(double temperature, double topP, int topK, double minP) {
    public static final SamplingDefaults NEUTRAL = new SamplingDefaults(1.0, 1.0, 0, 0.0);

    public static SamplingDefaults fromModel(Path dir) {
        Path f = dir.resolve("generation_config.json");
        if (!Files.isRegularFile(f)) {
            return NEUTRAL;
        }
        JsonNode g;
        try {
            g = new ObjectMapper().readTree(f.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + f + ": " + e.getMessage(), e);
        }
        if (!g.path("do_sample").asBoolean(true)) {
            return NEUTRAL;
        }
        return new SamplingDefaults(g.path("temperature").asDouble(1.0), g.path("top_p").asDouble(1.0),
                g.path("top_k").asInt(0), g.path("min_p").asDouble(0.0));
    }
}
