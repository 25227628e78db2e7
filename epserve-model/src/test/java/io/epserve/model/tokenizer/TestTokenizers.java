package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/** Loads the hand-written tokenizers under {@code src/test/resources/tokenizer/}. */
final class TestTokenizers {
    static final ObjectMapper JSON = new ObjectMapper();

    private TestTokenizers() {}

    static Path dir(String name) {
        try {
            return Path.of(TestTokenizers.class.getResource("/tokenizer/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static Tokenizer load(String name) {
        return Tokenizer.load(dir(name));
    }

    /** The tokenizer.json of {@code name}, edited by {@code edit}, with its tokenizer_config.json. */
    static Tokenizer variant(String name, Consumer<ObjectNode> edit) {
        try {
            ObjectNode root = (ObjectNode) JSON.readTree(dir(name).resolve("tokenizer.json").toFile());
            edit.accept(root);
            Path config = dir(name).resolve("tokenizer_config.json");
            return Tokenizer.fromJson(JSON.writeValueAsString(root),
                    Files.isRegularFile(config) ? Files.readString(config) : null);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Everything a streaming decoder returns for {@code ids}, flushed at the end. */
    static String stream(StreamingDecoder d, int[] ids) {
        StringBuilder b = new StringBuilder();
        for (int id : ids) {
            b.append(d.push(id));
        }
        return b.append(d.flush()).toString();
    }
}
