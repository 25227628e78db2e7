package io.epserve.model.tokenizer;

import static io.epserve.model.tokenizer.TestTokenizers.stream;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class DemoTokenizerTest {
    private static final String[] TEXTS = {
        "The baker opened the shop early, and the bread was warm.",
        "Questions for the reader: what would you measure?",
        "naïve café — 中文 日本語 🙂👍🏽 ∑ x² ≤ 10",
        "  leading and trailing spaces  \n\n\ttabs",
        "<|bos|> written in text is the special token",
    };

    @Test
    void demoVocabularyHasExactlyTheDefaultSize() {
        Tokenizer tok = DemoTokenizer.create(DemoTokenizer.DEFAULT_VOCAB_SIZE);
        assertThat(tok.vocabSize()).isEqualTo(32_000);
        assertThat(tok.mergeCount()).isEqualTo(32_000 - DemoTokenizer.MIN_VOCAB_SIZE);
        assertThat(tok.bosId()).isEqualTo(DemoTokenizer.BOS_ID);
        assertThat(tok.eosIds()).containsExactly(DemoTokenizer.EOS_ID);
        assertThat(tok.addBosToken()).isTrue();
        assertThat(tok.isSpecial(256)).isTrue();
        assertThat(tok.isSpecial(257)).isTrue();
        for (int id = 0; id < tok.vocabSize(); id++) {
            assertThat(tok.tokenText(id)).isNotNull();
        }
    }

    @Test
    void encodingIsFrozen() {
        // Demo token ids are part of the demo model; these were also checked against Hugging
        // Face tokenizers on the generated file. A change here means the corpus or the
        // generation changed.
        Tokenizer tok = DemoTokenizer.create(32_000);
        assertThat(tok.encodeWithSpecial(TEXTS[0]))
                .containsExactly(256, 466, 418, 266, 680, 260, 409, 305, 286, 480, 44, 279, 260, 506, 411, 701, 46);
        assertThat(tok.tokenText(258)).isEqualTo("Ġt");
        assertThat(tok.tokenText(260)).isEqualTo("Ġthe");
    }

    @Test
    void roundTripsText() {
        Tokenizer tok = DemoTokenizer.create(32_000);
        for (String s : TEXTS) {
            int[] ids = tok.encodeWithSpecial(s);
            assertThat(ids[0]).isEqualTo(DemoTokenizer.BOS_ID);
            assertThat(tok.decode(ids, true)).isEqualTo(s.replace("<|bos|>", ""));
            assertThat(tok.decode(tok.encode(s))).isEqualTo(s);
            assertThat(stream(tok.streamingDecoder(false), tok.encode(s))).isEqualTo(s);
        }
        assertThat(tok.encode("<|eos|>")).containsExactly(DemoTokenizer.EOS_ID);
    }

    @ParameterizedTest
    @ValueSource(ints = {258, 259, 300, 1_000, 5_000, 50_000})
    void anyVocabSizeIsExact(int size) {
        Tokenizer tok = DemoTokenizer.create(size);
        assertThat(tok.vocabSize()).isEqualTo(size);
        for (String s : TEXTS) {
            assertThat(tok.decode(tok.encode(s))).isEqualTo(s);
        }
    }

    @Test
    void everyMergeJoinsTwoExistingTokensIntoANewOne() throws Exception {
        JsonNode root = TestTokenizers.JSON.readTree(DemoTokenizer.tokenizerJson(32_000));
        Map<String, Integer> vocab = new HashMap<>();
        root.get("model").get("vocab").properties().forEach(e -> vocab.put(e.getKey(), e.getValue().asInt()));
        assertThat(vocab).hasSize(32_000);
        assertThat(vocab.values()).doesNotHaveDuplicates();
        int expectedId = DemoTokenizer.MIN_VOCAB_SIZE;
        for (JsonNode merge : root.get("model").get("merges")) {
            String a = merge.get(0).asText();
            String b = merge.get(1).asText();
            Integer result = vocab.get(a + b);
            assertThat(result).as("%s + %s", a, b).isEqualTo(expectedId++);
            assertThat(vocab.get(a)).isLessThan(result);
            assertThat(vocab.get(b)).isLessThan(result);
        }
        assertThat(expectedId).isEqualTo(32_000);
    }

    @Test
    void generationIsDeterministicAndSmallerVocabulariesArePrefixes() throws Exception {
        assertThat(DemoTokenizer.generate(1_234)).isEqualTo(DemoTokenizer.generate(1_234));
        JsonNode small = TestTokenizers.JSON.readTree(DemoTokenizer.tokenizerJson(2_000)).get("model").get("merges");
        JsonNode large = TestTokenizers.JSON.readTree(DemoTokenizer.tokenizerJson(32_000)).get("model").get("merges");
        for (int i = 0; i < small.size(); i++) {
            assertThat(small.get(i)).isEqualTo(large.get(i));
        }
    }

    @Test
    void writesFilesThatLoad(@TempDir Path dir) throws Exception {
        DemoTokenizer.write(dir, 4_096);
        Tokenizer tok = Tokenizer.load(dir);
        assertThat(tok.vocabSize()).isEqualTo(4_096);
        assertThat(tok.bosId()).isEqualTo(256);
        assertThat(tok.eosIds()).containsExactly(257);
    }

    @Test
    void tooSmallIsRejected() {
        assertThatThrownBy(() -> DemoTokenizer.tokenizerJson(257)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("at least 258");
    }
}
