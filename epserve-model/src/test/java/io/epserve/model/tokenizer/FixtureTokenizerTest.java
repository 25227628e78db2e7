package io.epserve.model.tokenizer;

import static io.epserve.model.tokenizer.TestTokenizers.stream;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The golden fixtures' tokenizer (shared/fixtures/*&#47;model): byte level, token id = byte
 * value, 256 tokens, no merges; bos/eos named in tokenizer_config.json by their byte-level
 * spelling ("ā" is byte 1).
 */
class FixtureTokenizerTest {

    private static Path modelDir(String name) {
        String root = System.getProperty("epserve.fixtures", "../../shared/fixtures");
        Path dir = Path.of(root, name, "model");
        assumeTrue(Files.isRegularFile(dir.resolve("tokenizer.json")), "fixtures not found at " + dir.toAbsolutePath());
        return dir;
    }

    @ParameterizedTest
    @CsvSource({"mixtral,1,2", "mixtral_f32,1,2", "qwen2_moe,1,2", "qwen3_moe,1,2", "olmoe,1,2", "deepseek_v3,0,1"})
    void loadsAndIsTheIdentityOnBytes(String name, int bos, int eos) {
        Tokenizer tok = Tokenizer.load(modelDir(name));
        assertThat(tok.vocabSize()).isEqualTo(256);
        assertThat(tok.mergeCount()).isZero();
        assertThat(tok.bosId()).isEqualTo(bos);
        assertThat(tok.eosIds()).containsExactly(eos);
        assertThat(tok.addBosToken()).isFalse();

        for (String s : new String[] {"Hello, world!", "The quick brown fox.\n", "naïve café — 中文 🙂", "\u0000\t\r\n\u007f", ""}) {
            byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
            int[] ids = tok.encode(s);
            assertThat(ids).hasSize(utf8.length);
            for (int i = 0; i < utf8.length; i++) {
                assertThat(ids[i]).isEqualTo(utf8[i] & 0xFF);
            }
            assertThat(tok.decode(ids)).isEqualTo(s);
            assertThat(stream(tok.streamingDecoder(), ids)).isEqualTo(s);
        }
    }

    @ParameterizedTest
    @CsvSource({"mixtral", "deepseek_v3"})
    void multiByteCharIsHeldBackUntilComplete(String name) {
        Tokenizer tok = Tokenizer.load(modelDir(name));
        StreamingDecoder d = tok.streamingDecoder(false);
        // "é" = C3 A9, "中" = E4 B8 AD
        assertThat(d.push('a')).isEqualTo("a");
        assertThat(d.push(0xC3)).isEmpty();
        assertThat(d.push(0xA9)).isEqualTo("é");
        assertThat(d.push(0xE4)).isEmpty();
        assertThat(d.push(0xB8)).isEmpty();
        assertThat(d.push(0xAD)).isEqualTo("中");
        assertThat(d.push(0xE4)).isEmpty();
        assertThat(d.flush()).isEqualTo("\uFFFD"); // an unfinished char at the end
    }
}
