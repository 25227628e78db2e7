package io.epserve.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.model.ModelConfig;
import io.epserve.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;

/**
 * The model as the API presents it: its name, tokenizer, chat template (if any), context
 * length, end-of-sequence ids and sampling defaults, and the expert layout the metrics draw.
 *
 * @param id           the name clients pass as {@code model}
 * @param maxModelLen  prompt + generated tokens one request may hold
 * @param vocabSize    ids a prompt given as token ids may use ([0, vocabSize))
 */
public record ServedModel(String id, Tokenizer tokenizer, Optional<ChatTemplate> chatTemplate, int maxModelLen,
                          int vocabSize, Set<Integer> eosIds, SamplingDefaults defaults, ExpertLayout layout,
                          long createdEpochSeconds) {
    /** The name of epserve's demo model in the API. */
    public static final String DEMO_NAME = "epserve-demo";

    public ServedModel {
        if (id == null || id.isBlank()) {
            throw new IllegalArgumentException("the served model name is empty");
        }
        if (maxModelLen < 2) {
            throw new IllegalArgumentException("max model length must be at least 2, got " + maxModelLen);
        }
        eosIds = Set.copyOf(eosIds);
    }

    /**
     * The model of a Hugging Face directory, named after the directory (the demo model:
     * {@value #DEMO_NAME}) unless {@code name} is given.
     */
    public static ServedModel fromDirectory(Path dir, ModelConfig cfg, Tokenizer tokenizer, ExpertLayout layout,
                                            String name, int maxModelLen) {
        Set<Integer> eos = new HashSet<>(cfg.eosTokenIds());
        eos.addAll(tokenizer.eosIds());
        String id = name != null ? name : defaultName(dir);
        return new ServedModel(id, tokenizer, ChatTemplate.forModel(dir), maxModelLen,
                Math.min(cfg.vocabSize(), tokenizer.vocabSize()), eos, SamplingDefaults.fromModel(dir), layout,
                System.currentTimeMillis() / 1000);
    }

    /** The directory's name; {@value #DEMO_NAME} for the demo model (its config.json has an epserve_note). */
    public static String defaultName(Path dir) {
        Path cfg = dir.resolve("config.json");
        if (Files.isRegularFile(cfg)) {
            try {
                if (new ObjectMapper().readTree(cfg.toFile()).has("epserve_note")) {
                    return DEMO_NAME;
                }
            } catch (IOException ignored) {
                // not our business here: loading the model reports a bad config.json
            }
        }
        Path n = dir.toAbsolutePath().normalize().getFileName();
        return n == null ? "model" : n.toString().replaceFirst("\\.gguf$", "");
    }
}
