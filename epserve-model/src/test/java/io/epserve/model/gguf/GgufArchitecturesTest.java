package io.epserve.model.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.model.Fixtures;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.RoutingListener;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every architecture's GGUF naming (llama with experts, qwen2moe, qwen3moe, olmoe, deepseek2):
 * the HF fixtures written as convert_hf_to_gguf.py writes them compute the fixtures' reference
 * logits; split files load from any part or from their folder.
 */
class GgufArchitecturesTest {
    @TempDir
    Path tmp;

    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    private static void assertLogitsMatch(String name, LoadedModel m) {
        JsonNode exp = Fixtures.expected(name);
        int vocab = m.config().vocabSize();
        for (JsonNode c : exp.get("cases")) {
            int[] tokens = Fixtures.ints(c.get("tokens"));
            KvCache cache = m.transformer().newCache(tokens.length);
            float[] logits = m.transformer().forward(cache, tokens, tokens.length, true, RoutingListener.NONE);
            double max = 0;
            for (int p = 0; p < tokens.length; p++) {
                for (int v = 0; v < vocab; v++) {
                    max = Math.max(max, Math.abs(logits[p * vocab + v] - c.get("logits").get(p).get(v).asDouble()));
                }
            }
            assertThat(max).as("%s as GGUF: max |Δlogit|", name).isLessThan(1e-3);
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void convertedFixtureComputesTheReferenceLogits(String name) {
        Path file = HfToGguf.convert(Fixtures.model(name), tmp.resolve(name + ".gguf"), 1);
        try (LoadedModel m = LoadedModel.load(file, LoadedModel.Options.defaults());
             LoadedModel hf = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            assertThat(m.config()).usingRecursiveComparison().ignoringFields("sparseLayers").isEqualTo(hf.config());
            assertThat(m.config().sparseLayers()).containsExactly(hf.config().sparseLayers());
            assertLogitsMatch(name, m);
        }
    }

    @Test
    void splitFilesLoadFromAnyPartAndFromTheirFolder() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("split"));
        Path first = HfToGguf.convert(Fixtures.model("mixtral"), dir.resolve("mixtral.gguf"), 3);
        assertThat(first.getFileName().toString()).isEqualTo("mixtral-00001-of-00003.gguf");
        for (Path p : new Path[] {first, dir.resolve("mixtral-00002-of-00003.gguf"), dir}) {
            try (LoadedModel m = LoadedModel.load(p, LoadedModel.Options.defaults())) {
                assertLogitsMatch("mixtral", m);
            }
        }
    }

    @Test
    void aMissingSplitIsNamed() throws Exception {
        Path dir = Files.createDirectories(tmp.resolve("split"));
        Path first = HfToGguf.convert(Fixtures.model("mixtral"), dir.resolve("mixtral.gguf"), 3);
        Files.delete(dir.resolve("mixtral-00003-of-00003.gguf"));
        assertThatThrownBy(() -> LoadedModel.load(first, LoadedModel.Options.defaults()))
                .hasMessage("mixtral-00003-of-00003.gguf: split file not found (part 3 of 3 of mixtral-00001-of-00003.gguf)");
    }
}
