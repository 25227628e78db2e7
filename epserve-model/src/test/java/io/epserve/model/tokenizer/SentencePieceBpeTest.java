package io.epserve.model.tokenizer;

import static io.epserve.model.tokenizer.TestTokenizers.load;
import static io.epserve.model.tokenizer.TestTokenizers.stream;
import static io.epserve.model.tokenizer.TestTokenizers.variant;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/**
 * The Llama 2 / Mixtral style tokenizer in {@code tokenizer/llama-mini}: {@code <unk>} 0,
 * {@code <s>} 1, {@code </s>} 2, byte tokens {@code <0x00>..<0xFF>} 3..258, then "▁" 259 and
 * the letters h e l o w r d t i (260..268), then 10 merges in "a b" string form:
 * 0 ▁+h=269, 1 l+l=270, 2 ▁h+e=271, 3 ▁he+ll=272, 4 ▁hell+o=273 "▁hello", 5 ▁+w=274,
 * 6 o+r=275, 7 ▁w+or=276, 8 l+d=277, 9 ▁wor+ld=278 "▁world".
 * Normalizer Prepend("▁") + Replace(" " → "▁"), no pre-tokenizer (the whole text is one
 * word), byte_fallback, decoder Replace/ByteFallback/Fuse/Strip(1 leading space).
 *
 * <p>Expected ids were derived by hand and agree with Hugging Face tokenizers 0.23.
 */
class SentencePieceBpeTest {
    private final Tokenizer tok = load("llama-mini");

    @Test
    void specialIdsComeFromTokenizerConfig() {
        assertThat(tok.vocabSize()).isEqualTo(279);
        assertThat(tok.bosId()).isEqualTo(1);
        assertThat(tok.eosIds()).containsExactly(2);
        assertThat(tok.addBosToken()).isTrue();
        assertThat(tok.addEosToken()).isFalse();
        assertThat(tok.tokenText(3 + 0x0A)).isEqualTo("<0x0A>");
        assertThat(tok.tokenBytes(3 + 0x0A)).containsExactly(0x0A);
    }

    @Test
    void wholeTextIsOneWordWithDummyPrefix() {
        // "▁hello▁world": ▁h, ll, ▁he, ▁hell, ▁hello, ▁w, or, ▁wor, ld, ▁world.
        assertThat(tok.encode("hello world")).containsExactly(273, 278);
        assertThat(tok.encodeWithSpecial("hello world")).containsExactly(1, 273, 278);
        assertThat(tok.encodeWithSpecial("hello world", false)).containsExactly(273, 278);
        assertThat(tok.encode("hello  world")).containsExactly(273, 259, 278);
        assertThat(tok.encode(" hello")).containsExactly(259, 273);
        assertThat(tok.encode("")).isEmpty();
    }

    @Test
    void textAfterAnAddedTokenGetsItsOwnPrefix() {
        // Each stretch between added tokens is normalized on its own (legacy Llama behaviour).
        assertThat(tok.encode("<s>hello")).containsExactly(1, 273);
    }

    @Test
    void decoderStripsTheDummyPrefixSpace() {
        assertThat(tok.decode(new int[] {273, 278})).isEqualTo("hello world");
        assertThat(tok.decode(new int[] {1, 273, 278})).isEqualTo("<s> hello world");
        assertThat(tok.decode(new int[] {1, 273, 278}, true)).isEqualTo("hello world");
        assertThat(tok.decode(new int[] {259, 273})).isEqualTo(" hello");
        assertThat(stream(tok.streamingDecoder(), new int[] {1, 273, 278})).isEqualTo("hello world");
        assertThat(stream(tok.streamingDecoder(false), new int[] {1, 273, 278})).isEqualTo("<s> hello world");
    }

    @Test
    void unknownCharsFallBackToBytes() {
        // € is E2 82 AC -> <0xE2> <0x82> <0xAC> = 3 + byte.
        int[] ids = tok.encode("€");
        assertThat(ids).containsExactly(259, 3 + 0xE2, 3 + 0x82, 3 + 0xAC);
        assertThat(tok.decode(ids)).isEqualTo("€");

        StreamingDecoder d = tok.streamingDecoder();
        assertThat(d.push(259)).isEmpty(); // the leading space is stripped
        assertThat(d.push(3 + 0xE2)).isEmpty();
        assertThat(d.push(3 + 0x82)).isEmpty();
        assertThat(d.push(3 + 0xAC)).isEqualTo("€");
        assertThat(d.push(278)).isEqualTo(" world");
        assertThat(d.flush()).isEmpty();
    }

    @Test
    void withoutByteFallbackUnknownCharsBecomeUnk() {
        Tokenizer fused = variant("llama-mini", root -> ((ObjectNode) root.get("model")).put("byte_fallback", false));
        assertThat(fused.encode("€€")).containsExactly(259, 0); // fuse_unk: one <unk> for the run
        Tokenizer unfused = variant("llama-mini", root -> ((ObjectNode) root.get("model"))
                .put("byte_fallback", false).put("fuse_unk", false));
        assertThat(unfused.encode("€€")).containsExactly(259, 0, 0);
    }

    @Test
    void metaspacePreTokenizerPrependsOnlyAtTheStart() {
        // Newer Mistral files: no normalizer, Metaspace(prepend_scheme "first", split false) both ways.
        Tokenizer meta = variant("llama-mini", root -> {
            root.putNull("normalizer");
            root.putObject("pre_tokenizer").put("type", "Metaspace").put("replacement", "▁")
                    .put("prepend_scheme", "first").put("split", false);
            root.putObject("decoder").put("type", "Metaspace").put("replacement", "▁")
                    .put("prepend_scheme", "first").put("split", false);
        });
        assertThat(meta.encode("hello world")).containsExactly(273, 278);
        // After <s> the text does not start the input, so no "▁" is put in front: h e ll o.
        assertThat(meta.encode("<s>hello")).containsExactly(1, 260, 261, 270, 263);
        assertThat(meta.decode(new int[] {273, 278})).isEqualTo("hello world");
    }

    @Test
    void metaspaceSplitCutsBeforeEachSpace() {
        Tokenizer meta = variant("llama-mini", root -> {
            root.putNull("normalizer");
            root.putObject("pre_tokenizer").put("type", "Metaspace").put("replacement", "▁")
                    .put("prepend_scheme", "always").put("split", true);
        });
        assertThat(meta.encode("hello world")).containsExactly(273, 278);
        assertThat(meta.encode("<s>hello")).containsExactly(1, 273);
    }

    @Test
    void roundTrips() {
        for (String s : new String[] {"hello world", "Hello, World! 🙂", "naïve café 中文", "a\n\nb\tc", "trailing  "}) {
            assertThat(tok.decode(tok.encode(s))).as(s).isEqualTo(s);
            assertThat(stream(tok.streamingDecoder(), tok.encodeWithSpecial(s))).as(s).isEqualTo(s);
        }
    }

    @Test
    void longSingleWordIsNotQuadratic() {
        // Without a pre-tokenizer the whole prompt is one BPE word: the heap-based merge loop
        // keeps this O(n log n).
        String text = "hello world ".repeat(40_000); // 480K chars in one word
        assertTimeoutPreemptively(Duration.ofSeconds(20), () -> {
            int[] ids = tok.encode(text);
            assertThat(ids).hasSize(80_000 + 1); // ▁hello ▁world ... and a final ▁
            assertThat(tok.decode(ids)).isEqualTo(text);
        });
    }
}
