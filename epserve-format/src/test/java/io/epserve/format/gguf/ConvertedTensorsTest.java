package io.epserve.format.gguf;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.format.CacheFile;
import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Q5_K / Q6_K tensors (no kernel) are converted once into a file beside the GGUF, which later
 * opens map instead of converting; the values are those of a conversion in memory, and a changed
 * GGUF file gets a file of its own.
 */
class ConvertedTensorsTest {
    static final String FILE = "synth-moe-q5_k.gguf";

    /** Every HF tensor's bytes. */
    private static Map<String, byte[]> all(GgufModel g) {
        Map<String, byte[]> out = new TreeMap<>();
        for (String n : g.names()) {
            Tensor t = g.tensor(n);
            out.put(n, t.data().toArray(ValueLayout.JAVA_BYTE));
        }
        return out;
    }

    private static Path link(Path dir, String file) throws IOException {
        Files.createDirectories(dir);
        return Files.createSymbolicLink(dir.resolve(file), GgufFixtures.dir().resolve(file));
    }

    @Test
    void convertedOnceThenMappedWithTheValuesOfAConversionInMemory(@TempDir Path tmp) throws IOException {
        // no cache folder can be made (a file stands where each would go): converted in memory
        Path memDir = tmp.resolve("memory");
        Path inMemory = link(memDir, FILE);
        Files.writeString(memDir.resolve(CacheFile.DIR_NAME), "not a folder");
        Files.writeString(tmp.resolve("blocked"), "not a folder");
        Map<String, byte[]> want;
        int converted;
        try (GgufModel g = GgufModel.open(inMemory, tmp.resolve("blocked").resolve("fallback"))) {
            want = all(g);
            converted = g.conversions();
            assertThat(g.convertedFile()).isEmpty();
        }
        // 2 layers x 3 stacked expert tensors x 4 experts, and the 10 other matrices
        assertThat(converted).isEqualTo(2 * 3 * 4 + 10);

        Path file = link(tmp.resolve("model"), FILE);
        Path fallback = tmp.resolve("fallback");
        Path cacheFile;
        try (GgufModel g = GgufModel.open(file, fallback)) {
            assertThat(g.tensor("model.layers.1.block_sparse_moe.experts.2.w2.weight").dtype()).isEqualTo(DType.Q8_0);
            assertThat(g.conversions()).as("every tensor without a kernel, converted together on first need").isEqualTo(converted);
            assertThat(equal(all(g), want)).isTrue();
            cacheFile = g.convertedFile().orElseThrow();
            assertThat(cacheFile.getParent()).isEqualTo(tmp.resolve("model").resolve(CacheFile.DIR_NAME));
        }
        try (GgufModel g = GgufModel.open(file, fallback)) {
            assertThat(equal(all(g), want)).isTrue();
            assertThat(g.conversions()).as("the second open maps the converted tensors").isZero();
            assertThat(g.convertedFile()).contains(cacheFile);
        }
        assertThat(fallback).doesNotExist();
    }

    @Test
    void aChangedFileGetsItsOwnConvertedTensors(@TempDir Path tmp) throws IOException {
        Path file = tmp.resolve(FILE);
        byte[] b = Files.readAllBytes(GgufFixtures.dir().resolve(FILE));
        Files.write(file, b);
        Path before;
        try (GgufModel g = GgufModel.open(file, tmp.resolve("fallback"))) {
            g.tensor("lm_head.weight");
            before = g.convertedFile().orElseThrow();
            // the last byte of the data: the last block of the last tensor
            b[b.length - 1] ^= 0x11;
        }
        Files.write(file, b);
        try (GgufModel g = GgufModel.open(file, tmp.resolve("fallback"))) {
            g.tensor("lm_head.weight");
            assertThat(g.conversions()).isPositive();
            assertThat(g.convertedFile().orElseThrow()).isNotEqualTo(before);
        }
    }

    private static boolean equal(Map<String, byte[]> a, Map<String, byte[]> b) {
        if (!a.keySet().equals(b.keySet())) {
            return false;
        }
        for (Map.Entry<String, byte[]> e : a.entrySet()) {
            if (!Arrays.equals(e.getValue(), b.get(e.getKey()))) {
                throw new AssertionError("tensor " + e.getKey() + " differs");
            }
        }
        return true;
    }
}
