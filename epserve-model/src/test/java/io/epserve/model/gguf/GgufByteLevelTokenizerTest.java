package io.epserve.model.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.gguf.GgufFile;
import io.epserve.model.tokenizer.GgufTokenizer;
import io.epserve.model.tokenizer.Tokenizer;
import io.epserve.model.tokenizer.TokenizerException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A {@code gpt2} vocabulary in GGUF metadata (tokens, token types, merges, pre-tokenizer name)
 * tokenizes as the Hugging Face tokenizer.json it was made from: the test tokenizer gpt2-mini
 * (Qwen2's pre-tokenizer regex, byte-level BPE, added tokens), written as convert_hf_to_gguf does.
 */
class GgufByteLevelTokenizerTest {
    @TempDir
    Path tmp;

    private Path hfDir() throws Exception {
        return Path.of(getClass().getResource("/tokenizer/gpt2-mini").toURI());
    }

    private Path writeGguf(String pre) throws Exception {
        JsonNode t = new ObjectMapper().readTree(hfDir().resolve("tokenizer.json").toFile());
        int size = 0;
        for (Map.Entry<String, JsonNode> e : t.get("model").get("vocab").properties()) {
            size = Math.max(size, e.getValue().asInt() + 1);
        }
        for (JsonNode a : t.get("added_tokens")) {
            size = Math.max(size, a.get("id").asInt() + 1);
        }
        String[] tokens = new String[size];
        int[] types = new int[size];
        Arrays.fill(types, 1);
        t.get("model").get("vocab").properties().forEach(e -> tokens[e.getValue().asInt()] = e.getKey());
        for (JsonNode a : t.get("added_tokens")) {
            tokens[a.get("id").asInt()] = a.get("content").asText();
            types[a.get("id").asInt()] = a.get("special").asBoolean() ? 3 : 4;
        }
        List<String> merges = new ArrayList<>();
        for (JsonNode m : t.get("model").get("merges")) {
            merges.add(m.isArray() ? m.get(0).asText() + " " + m.get(1).asText() : m.asText());
        }
        Path file = tmp.resolve("gpt2-mini-" + pre + ".gguf");
        new TestGgufWriter().string("general.architecture", "qwen2moe")
                .string("tokenizer.ggml.model", "gpt2").string("tokenizer.ggml.pre", pre)
                .strings("tokenizer.ggml.tokens", Arrays.asList(tokens)).ints("tokenizer.ggml.token_type", types)
                .strings("tokenizer.ggml.merges", merges)
                .u32("tokenizer.ggml.eos_token_id", 271).u32("tokenizer.ggml.bos_token_id", 269)
                .string("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
                .write(file);
        return file;
    }

    @Test
    void encodesAndDecodesAsTheHfTokenizer() throws Exception {
        Tokenizer gguf = Tokenizer.load(writeGguf("qwen2"));
        Tokenizer hf = Tokenizer.load(hfDir());
        assertThat(gguf.vocabSize()).isEqualTo(hf.vocabSize());
        assertThat(gguf.eosIds()).containsExactly(271);
        assertThat(gguf.addBosToken()).isFalse();
        List<String> texts = new ArrayList<>(List.of("Hello world", "the thing's", "  the   world  ", "THE'S", "café 123",
                "x\r\n\n  y", "<|im_start|>user\nhi<|im_end|>", "a<think>b", "the world<|endoftext|>"));
        Random r = new Random(3);
        String alphabet = "the world's thing é123\n ";
        for (int i = 0; i < 200; i++) {
            StringBuilder sb = new StringBuilder();
            for (int j = 0, n = 1 + r.nextInt(20); j < n; j++) {
                sb.append(alphabet.charAt(r.nextInt(alphabet.length())));
            }
            texts.add(sb.toString());
        }
        for (String s : texts) {
            int[] ids = gguf.encode(s);
            assertThat(ids).as("encode(%s)", s).containsExactly(hf.encode(s));
            assertThat(gguf.decode(ids)).isEqualTo(hf.decode(ids));
        }
        assertThat(gguf.isSpecial(270)).isTrue();
        assertThat(gguf.isSpecial(272)).isFalse();
    }

    @Test
    void theChatTemplateAndSpecialTokensComeFromTheMetadata() throws Exception {
        try (GgufFile f = GgufFile.open(writeGguf("qwen2"))) {
            JsonNode config = GgufTokenizer.tokenizerConfig(f.metadata());
            assertThat(config.get("chat_template").asText()).isEqualTo("{% for m in messages %}{{ m['content'] }}{% endfor %}");
            assertThat(config.get("bos_token").asText()).isEqualTo("<|endoftext|>");
            assertThat(config.get("eos_token").asText()).isEqualTo("<|im_end|>");
        }
    }

    @Test
    void anUnknownPreTokenizerIsNamed() throws Exception {
        Path file = writeGguf("made-up");
        assertThatThrownBy(() -> Tokenizer.load(file)).isInstanceOf(TokenizerException.class)
                .hasMessageContaining("metadata key 'tokenizer.ggml.pre' is 'made-up', which epserve does not read");
    }
}
