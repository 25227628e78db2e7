package io.epserve.model.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.Fixtures;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The sentencepiece vocabulary of the GGUF fixtures, read from the file's metadata. */
class GgufTokenizerTest {
    static final Path GGUF = Fixtures.root().resolve("gguf").resolve("synth-moe-q8_0.gguf");
    static final Path HF = Fixtures.root().resolve("gguf").resolve("hf");

    @Test
    void specialTokensAndFlagsComeFromTheMetadata() {
        Tokenizer t = Tokenizer.load(GGUF);
        assertThat(t.vocabSize()).isEqualTo(2048);
        assertThat(t.bosId()).isEqualTo(1);
        assertThat(t.eosIds()).containsExactly(2);
        assertThat(t.addBosToken()).isTrue();
        assertThat(t.isSpecial(0)).isTrue();
        assertThat(t.isSpecial(3)).isFalse();
        assertThat(t.encodeWithSpecial("ab")[0]).isEqualTo(1);
    }

    @Test
    void decodingEqualsTheHfTokenizersOnTheSameVocabulary() {
        Tokenizer gguf = Tokenizer.load(GGUF);
        Tokenizer hf = Tokenizer.load(HF);
        Random r = new Random(7);
        for (int n = 0; n < 200; n++) {
            int[] ids = new int[1 + r.nextInt(12)];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = 259 + r.nextInt(2048 - 259); // normal pieces
            }
            assertThat(gguf.decode(ids)).isEqualTo(hf.decode(ids));
        }
    }

    /**
     * llama.cpp's llm_tokenizer_spm, written plainly: symbols are the code points of "▁" + text
     * with spaces as "▁"; repeatedly merge the adjacent pair whose concatenation is a piece of the
     * highest score (the leftmost on ties); a symbol left that is not a piece becomes its UTF-8 bytes.
     */
    static int[] referenceSpm(String text, List<String> pieces, float[] scores) {
        Map<String, Integer> id = new HashMap<>();
        for (int i = 259; i < pieces.size(); i++) {
            id.put(pieces.get(i), i);
        }
        String norm = "\u2581" + text.replace(" ", "\u2581");
        List<String> sym = new ArrayList<>();
        norm.codePoints().forEach(cp -> sym.add(new String(Character.toChars(cp))));
        while (true) {
            int best = -1;
            float bestScore = Float.NEGATIVE_INFINITY;
            for (int i = 0; i + 1 < sym.size(); i++) {
                Integer m = id.get(sym.get(i) + sym.get(i + 1));
                if (m != null && scores[m] > bestScore) {
                    best = i;
                    bestScore = scores[m];
                }
            }
            if (best < 0) {
                break;
            }
            sym.set(best, sym.get(best) + sym.remove(best + 1));
        }
        List<Integer> out = new ArrayList<>();
        for (String s : sym) {
            Integer i = id.get(s);
            if (i != null) {
                out.add(i);
            } else {
                for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
                    out.add(3 + (b & 0xFF)); // <0x00> is id 3
                }
            }
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void encodingMergesAsLlamaCppsSentencepieceDoes() {
        Tokenizer t = Tokenizer.load(GGUF);
        List<String> pieces = new ArrayList<>();
        float[] scores = new float[2048];
        for (int i = 0; i < 2048; i++) {
            pieces.add(t.tokenText(i));
            // the fixture's scores: −(index among the pieces) for the pieces, 0 before them
            scores[i] = i < 259 ? 0 : -(i - 259);
        }
        Random r = new Random(11);
        String alphabet = "abcdefghijklmnopqrstuvwxyz   ";
        for (int n = 0; n < 300; n++) {
            StringBuilder sb = new StringBuilder();
            for (int i = 0, len = 1 + r.nextInt(24); i < len; i++) {
                sb.append(alphabet.charAt(r.nextInt(alphabet.length())));
            }
            if (n % 10 == 0) {
                sb.append("é!"); // not pieces: byte fallback
            }
            String text = sb.toString();
            assertThat(t.encode(text)).as("encode(\"%s\")", text).containsExactly(referenceSpm(text, pieces, scores));
            assertThat(t.decode(t.encode(text))).isEqualTo(text);
        }
    }
}
