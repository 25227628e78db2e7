package io.epserve.model.tokenizer;

import static io.epserve.model.tokenizer.TestTokenizers.load;
import static io.epserve.model.tokenizer.TestTokenizers.variant;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.text.Normalizer;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * The GPT-2 / Qwen style tokenizer in {@code tokenizer/gpt2-mini}: ids 0..255 are the bytes in
 * byte-level spelling (id = byte value), then 13 merges (ids 256..268), then added tokens
 * {@code <|endoftext|>} 269, {@code <|im_start|>} 270, {@code <|im_end|>} 271 (special) and
 * {@code <think>} 272 (not special). Pre-tokenizer: Qwen2's Split regex, then ByteLevel.
 *
 * <p>Merges by rank: 0 Ġ+t=256, 1 h+e=257, 2 Ġt+he=258 "Ġthe", 3 i+n=259, 4 in+g=260,
 * 5 l+l=261, 6 Ġ+w=262, 7 o+r=263, 8 Ġw+or=264, 9 l+d=265, 10 Ġwor+ld=266 "Ġworld",
 * 11 Ã+©=267 "é" as UTF-8 C3 A9, 12 '+s=268.
 *
 * <p>The expected ids below were worked out by hand from those merges and agree with Hugging
 * Face tokenizers 0.23 on the same file.
 */
class ByteLevelBpeTest {
    private final Tokenizer tok = load("gpt2-mini");

    @Test
    void vocabularyAndSpecialIds() {
        assertThat(tok.vocabSize()).isEqualTo(273);
        assertThat(tok.mergeCount()).isEqualTo(13);
        assertThat(tok.bosId()).isNull();
        // eos_token from tokenizer_config first, then generation_config's list (271 again, 269).
        assertThat(tok.eosIds()).containsExactly(271, 269);
        assertThat(tok.addBosToken()).isFalse();
        assertThat(tok.tokenText(266)).isEqualTo("Ġworld");
        assertThat(new String(tok.tokenBytes(266), StandardCharsets.UTF_8)).isEqualTo(" world");
        assertThat(tok.tokenText(32)).isEqualTo("Ġ");
        assertThat(tok.tokenId("<|im_end|>")).isEqualTo(271);
        assertThat(tok.tokenId("Ġthe")).isEqualTo(258);
        assertThat(tok.tokenId("nope")).isNull();
        assertThat(tok.isSpecial(270)).isTrue();
        assertThat(tok.isSpecial(272)).isFalse();
        assertThat(tok.isSpecial(266)).isFalse();
    }

    @Test
    void mergesApplyInRankOrder() {
        // "Hello": no merge for "H e" (only lowercase "h e"), "l l" -> 261.
        // " world": Ġw(6) -> or(7) -> Ġwor(8) -> ld(9) -> Ġworld(10).
        assertThat(tok.encode("Hello world")).containsExactly(72, 101, 261, 111, 266);
        // "the" -> t + he; " thing" -> Ġt(0), then in(3), ing(4): "Ġt h ing"; "'s" -> 268.
        assertThat(tok.encode("the thing's")).containsExactly(116, 257, 256, 104, 260, 268);
        // Multiple spaces: "\s+(?!\S)" leaves the last space to join the next word.
        assertThat(tok.encode("  the   world  ")).containsExactly(32, 258, 32, 32, 266, 32, 32);
    }

    @Test
    void caseInsensitiveContractionsAndDigits() {
        // (?i:'s) splits "'S" off, but the merge is for lowercase "'s" only.
        assertThat(tok.encode("THE'S")).containsExactly(84, 72, 69, 39, 83);
        // \p{N} takes one digit at a time; é is C3 A9 -> merge 267.
        assertThat(tok.encode("café 123")).containsExactly(99, 97, 102, 267, 32, 49, 50, 51);
        assertThat(tok.encode("x\r\n\n  y")).containsExactly(120, 13, 10, 10, 32, 32, 121);
    }

    @Test
    void nfcNormalizerComposesBeforeBpe() {
        assertThat(tok.encode("cafe\u0301 123")).containsExactly(tok.encode("café 123"));
    }

    @Test
    void addedTokensAreCutOutBeforeBpe() {
        int[] ids = tok.encode("<|im_start|>user\nhi<|im_end|>");
        assertThat(ids).containsExactly(270, 117, 115, 101, 114, 10, 104, 105, 271);
        assertThat(tok.decode(ids)).isEqualTo("<|im_start|>user\nhi<|im_end|>");
        assertThat(tok.decode(ids, true)).isEqualTo("user\nhi");
        assertThat(tok.encode("a<think>b")).containsExactly(97, 272, 98);
        // encodeWithSpecial adds nothing: no bos, add_bos_token false.
        assertThat(tok.encodeWithSpecial("hi")).containsExactly(104, 105);
        assertThat(tok.encodeWithSpecial("hi", true)).containsExactly(104, 105);
    }

    @Test
    void specialTokensCanBeTreatedAsText() {
        int[] ids = tok.encode("<|im_start|>user", false);
        assertThat(ids).containsExactly(60, 124, 105, 109, 95, 115, 116, 97, 114, 116, 124, 62, 117, 115, 101, 114);
        assertThat(tok.decode(ids)).isEqualTo("<|im_start|>user");
        // Non-special added tokens are still matched.
        assertThat(tok.encode("a<think>b", false)).containsExactly(97, 272, 98);
    }

    @Test
    void lstripRstripAndSingleWord() {
        Tokenizer strip = variant("gpt2-mini", root -> ((ObjectNode) root.get("added_tokens").get(3))
                .put("lstrip", true).put("rstrip", true));
        assertThat(strip.encode("a <think> b")).containsExactly(97, 272, 98);
        assertThat(strip.encode("a  <think>  b")).containsExactly(97, 272, 98);
        // Whitespace is Unicode White_Space, as in Rust: no-break space and U+0085 count.
        assertThat(strip.encode("a\u00a0<think>\u0085b")).containsExactly(97, 272, 98);

        Tokenizer single = variant("gpt2-mini", root -> ((ObjectNode) root.get("added_tokens").get(3))
                .put("single_word", true));
        // Inside a word: not matched, so "<think" and ">b" are BPE-encoded.
        assertThat(single.encode("a<think>b")).containsExactly(97, 60, 116, 104, 259, 107, 62, 98);
        assertThat(single.encode("a <think> b")).containsExactly(97, 32, 272, 32, 98);
        // A combining mark is a word char (Unicode \w), so no match after "e\u0301"; NFC then makes "é".
        assertThat(single.encode("e\u0301<think>")).containsExactly(267, 60, 116, 104, 259, 107, 62);
    }

    @Test
    void ignoreMergesTakesWholeWordsFromTheVocab() {
        // "world" is added to the vocab (273) but no merge builds it.
        Tokenizer plain = variant("gpt2-mini", root -> ((ObjectNode) root.get("model").get("vocab")).put("world", 273));
        assertThat(plain.encode("world world")).containsExactly(119, 263, 265, 266);
        Tokenizer ignoring = variant("gpt2-mini", root -> {
            ObjectNode model = (ObjectNode) root.get("model");
            ((ObjectNode) model.get("vocab")).put("world", 273);
            model.put("ignore_merges", true);
        });
        assertThat(ignoring.encode("world world")).containsExactly(273, 266);
    }

    @Test
    void byteLevelPreTokenizerWithGpt2RegexAndPrefixSpace() {
        Tokenizer gpt2 = variant("gpt2-mini", root -> root.putObject("pre_tokenizer")
                .put("type", "ByteLevel").put("add_prefix_space", true).put("use_regex", true));
        // A space is put in front, so "the" becomes "Ġthe".
        assertThat(gpt2.encode("the world")).containsExactly(258, 266);
        assertThat(gpt2.decode(gpt2.encode("the world"))).isEqualTo(" the world");
    }

    @Test
    void roundTripsArbitraryText() {
        String[] texts = {"", " ", "Hello, World! It's 2024.", "naïve café — 中文 日本語 🙂👍🏽", "tabs\tand\nnewlines\r\n",
            "<|im_start|>system\nYou are helpful.<|im_end|>\n", "\u0000\u0001 control \u007f", "a\u00a0b\u2003c\u3000d"};
        for (String s : texts) {
            assertThat(tok.decode(tok.encode(s))).as(s).isEqualTo(Normalizer.normalize(s, Normalizer.Form.NFC));
        }
    }

    @Test
    void emojiIsFourByteTokensAndStreamsAsOneChar() {
        int[] ids = tok.encode("🙂");
        assertThat(ids).containsExactly(0xF0, 0x9F, 0x99, 0x82);
        StreamingDecoder d = tok.streamingDecoder();
        assertThat(d.push(ids[0])).isEmpty();
        assertThat(d.push(ids[1])).isEmpty();
        assertThat(d.push(ids[2])).isEmpty();
        assertThat(d.push(ids[3])).isEqualTo("🙂");
        assertThat(d.flush()).isEmpty();
    }

    @Test
    void longInputIsFast() {
        String paragraph = "The thing's world is a long string of words, with punctuation; numbers 12345 and café. ";
        String text = paragraph.repeat(5_000); // ~450 KB
        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> {
            int[] ids = tok.encode(text);
            assertThat(tok.decode(ids)).isEqualTo(text);
        });
    }

    @Test
    void idsOutOfRangeAreRejected() {
        assertThatThrownBy(() -> tok.decode(new int[] {273})).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("273");
        assertThatThrownBy(() -> tok.tokenText(-1)).isInstanceOf(IllegalArgumentException.class);
    }
}
