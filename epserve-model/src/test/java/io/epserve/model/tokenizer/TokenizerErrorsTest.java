package io.epserve.model.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Unsupported or broken files fail at load with a message naming the file and the thing. */
class TokenizerErrorsTest {
    @TempDir
    Path dir;

    private Path write(Consumer<ObjectNode> edit) throws IOException {
        ObjectNode root = (ObjectNode) TestTokenizers.JSON.readTree(
                TestTokenizers.dir("gpt2-mini").resolve("tokenizer.json").toFile());
        edit.accept(root);
        Files.writeString(dir.resolve("tokenizer.json"), TestTokenizers.JSON.writeValueAsString(root));
        return dir;
    }

    @Test
    void unsupportedModelType() throws IOException {
        Path p = write(root -> ((ObjectNode) root.get("model")).put("type", "WordPiece"));
        assertThatThrownBy(() -> Tokenizer.load(p)).isInstanceOf(TokenizerException.class)
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("tokenizer.json").hasMessageContaining(dir.toString())
                .hasMessageContaining("model type \"WordPiece\"");
    }

    @Test
    void unsupportedPreTokenizer() throws IOException {
        Path p = write(root -> root.putObject("pre_tokenizer").put("type", "BertPreTokenizer"));
        assertThatThrownBy(() -> Tokenizer.load(p)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining(dir.toString()).hasMessageContaining("pre_tokenizer type \"BertPreTokenizer\"");
    }

    @Test
    void unsupportedPreTokenizerInsideSequence() throws IOException {
        Path p = write(root -> ((ObjectNode) root.get("pre_tokenizer").get("pretokenizers").get(1)).put("type", "UnicodeScripts"));
        assertThatThrownBy(() -> Tokenizer.load(p)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("UnicodeScripts");
    }

    @Test
    void unsupportedNormalizerAndDecoder() throws IOException {
        Path n = write(root -> root.putObject("normalizer").put("type", "Precompiled"));
        assertThatThrownBy(() -> Tokenizer.load(n)).hasMessageContaining("normalizer type \"Precompiled\"");
        Path d = write(root -> root.putObject("decoder").put("type", "WordPiece"));
        assertThatThrownBy(() -> Tokenizer.load(d)).hasMessageContaining("decoder type \"WordPiece\"");
    }

    @Test
    void mergeWithUnknownToken() throws IOException {
        Path p = write(root -> ((com.fasterxml.jackson.databind.node.ArrayNode) root.get("model").get("merges"))
                .addArray().add("Ġworld").add("zz"));
        assertThatThrownBy(() -> Tokenizer.load(p)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("merge #13").hasMessageContaining("\"zz\"");
    }

    @Test
    void badRegex() throws IOException {
        Path p = write(root -> ((ObjectNode) root.get("pre_tokenizer").get("pretokenizers").get(0).get("pattern"))
                .put("Regex", "(unclosed"));
        assertThatThrownBy(() -> Tokenizer.load(p)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("(unclosed");
    }

    @Test
    void missingOrMalformedFile() throws IOException {
        assertThatThrownBy(() -> Tokenizer.load(dir)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("no tokenizer.json");
        Files.writeString(dir.resolve("tokenizer.json"), "{ not json");
        assertThatThrownBy(() -> Tokenizer.load(dir)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("not valid JSON");
    }

    @Test
    void unknownBosNameInConfig() throws IOException {
        write(root -> { });
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<missing>\"}");
        assertThatThrownBy(() -> Tokenizer.load(dir)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("bos_token").hasMessageContaining("<missing>");
    }

    @Test
    void loadAcceptsTheFileItself() throws IOException {
        write(root -> { });
        assertThat(Tokenizer.load(dir.resolve("tokenizer.json")).vocabSize()).isEqualTo(273);
    }

    @Test
    void onigurumaSpellingsAreTranslated() {
        assertThat(Regexes.translate("[\\p{Han}]+|\\p{^L}|\\h")).isEqualTo("[\\p{IsHan}]+|\\P{L}|[0-9a-fA-F]");
        assertThat(Regexes.compile("\\p{Hiragana}+", "test").matcher("ひらがな").matches()).isTrue();
        // \s is Unicode-aware, as in Oniguruma.
        assertThat(Regexes.compile("\\s", "test").matcher("\u3000").matches()).isTrue();
    }
}
