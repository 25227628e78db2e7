package io.epserve.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.tensor.DType;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {
    @TempDir
    Path dir;

    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private void shard(String file, String tensor, float value) throws IOException {
        SafetensorsWriter.write(dir.resolve(file), List.of(new SafetensorsWriter.Spec(tensor, DType.BF16, new long[] {2, 2})),
                (i, spec, seg) -> {
                    for (int j = 0; j < 4; j++) {
                        seg.set(I16, j * 2L, Numerics.floatToBf16(j == 3 ? value : j));
                    }
                });
    }

    @Test
    void readsIndexedShards() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{\"architectures\": [\"X\"]}");
        shard("model-00001-of-00002.safetensors", "a.weight", 3);
        shard("model-00002-of-00002.safetensors", "b.weight", 7);
        Files.writeString(dir.resolve("model.safetensors.index.json"), """
                {"metadata": {"total_size": 16}, "weight_map": {
                  "a.weight": "model-00001-of-00002.safetensors",
                  "b.weight": "model-00002-of-00002.safetensors"}}""");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.names()).containsExactly("a.weight", "b.weight");
            assertThat(c.tensor("b.weight", 2, 2).toFloatArray()).containsExactly(0, 1, 2, 7);
            assertThat(c.fileOf("a.weight")).isEqualTo("model-00001-of-00002.safetensors");
            assertThat(c.config().get("architectures").get(0).asText()).isEqualTo("X");
            assertThatThrownBy(() -> c.tensor("a.weight", 4, 1)).isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("model-00001-of-00002.safetensors").hasMessageContaining("'a.weight'")
                    .hasMessageContaining("[2, 2]").hasMessageContaining("[4, 1]");
            assertThatThrownBy(() -> c.tensor("c.weight")).hasMessageContaining("missing tensor 'c.weight'");
        }
    }

    @Test
    void readsUnindexedShards() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        shard("part-a.safetensors", "a.weight", 3);
        shard("part-b.safetensors", "b.weight", 7);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.fileOf("b.weight")).isEqualTo("part-b.safetensors");
        }
    }

    @Test
    void missingShardOfIndexIsNamed() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        Files.writeString(dir.resolve("model.safetensors.index.json"),
                "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\"}}");
        assertThatThrownBy(() -> Checkpoint.open(dir)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model-00001-of-00002.safetensors").hasMessageContaining("not found");
    }

    @Test
    void missingOrMalformedConfigIsNamed() throws IOException {
        shard("model.safetensors", "a", 1);
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("config.json").hasMessageContaining("not found");
        Files.writeString(dir.resolve("config.json"), "{\"a\": ");
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("config.json").hasMessageContaining("malformed");
        assertThatThrownBy(() -> Checkpoint.open(dir.resolve("nowhere"))).hasMessageContaining("not found");
    }

    @Test
    void noWeightsIsNamed() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        assertThatThrownBy(() -> Checkpoint.open(dir)).hasMessageContaining("model.safetensors").hasMessageContaining("not found");
    }

    @Test
    void nonFiniteWeightsAreFoundAndNamed() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{}");
        shard("model.safetensors", "ok.weight", 1);
        try (Checkpoint c = Checkpoint.open(dir)) {
            Validation.requireFinite(c, c.names(), Progress.NONE);
        }
        shard("model.safetensors", "bad.weight", Float.NaN);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> Validation.requireFinite(c, c.names(), Progress.NONE))
                    .isInstanceOf(CheckpointException.class).hasMessageContaining("model.safetensors")
                    .hasMessageContaining("'bad.weight'").hasMessageContaining("element 3");
        }
    }

    @Test
    void finiteScanFindsEveryPositionAndDtype() {
        for (DType t : new DType[] {DType.F32, DType.BF16, DType.F16}) {
            for (int n : new int[] {1, 3, 4, 5, 8, 17, 33}) {
                for (int bad = 0; bad < n; bad++) {
                    float[] v = new float[n];
                    v[bad] = bad % 2 == 0 ? Float.POSITIVE_INFINITY : Float.NaN;
                    var seg = Arena.ofAuto().allocate(t.bytesFor(n));
                    for (int i = 0; i < n; i++) {
                        switch (t) {
                            case F32 -> seg.set(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i * 4L, v[i]);
                            case BF16 -> seg.set(I16, i * 2L, Numerics.floatToBf16(v[i]));
                            case F16 -> seg.set(I16, i * 2L, Numerics.floatToF16(v[i]));
                        }
                    }
                    var tensor = new Tensor("t", seg, t, new long[] {n});
                    assertThat(Validation.firstNonFinite(tensor, Progress.NONE)).as("%s n=%d bad=%d", t, n, bad).isEqualTo(bad);
                }
            }
        }
    }
}
