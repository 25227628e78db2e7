package io.epserve.format;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.tensor.DType;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsFileTest {
    @TempDir
    Path dir;

    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Path writeSample() throws IOException {
        Path f = dir.resolve("model.safetensors");
        SafetensorsWriter.write(f, List.of(
                new SafetensorsWriter.Spec("a", DType.F32, new long[] {2, 3}),
                new SafetensorsWriter.Spec("b", DType.BF16, new long[] {4}),
                new SafetensorsWriter.Spec("c", DType.F16, new long[] {1, 2})), (i, spec, seg) -> {
            long n = spec.bytes() / spec.dtype().bytes();
            for (long j = 0; j < n; j++) {
                float v = i * 10 + j;
                switch (spec.dtype()) {
                    case F32 -> seg.set(F32, j * 4, v);
                    case BF16 -> seg.set(I16, j * 2, Numerics.floatToBf16(v));
                    case F16 -> seg.set(I16, j * 2, Numerics.floatToF16(v));
                }
            }
        });
        return f;
    }

    /** Writes a file with a hand-made header and a data region of the given size. */
    private Path writeRaw(String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Path f = dir.resolve("raw.safetensors");
        Files.write(f, b.array());
        return f;
    }

    @Test
    void roundTripsEveryDtypeAsViews() throws IOException {
        try (SafetensorsFile f = SafetensorsFile.open(writeSample())) {
            Tensor a = f.tensor("a");
            assertThat(a.shape()).containsExactly(2, 3);
            assertThat(a.toFloatArray()).containsExactly(0, 1, 2, 3, 4, 5);
            assertThat(f.tensor("b").toFloatArray()).containsExactly(10, 11, 12, 13);
            assertThat(f.tensor("c").toFloatArray()).containsExactly(20, 21);
            // a view of the file's mapping (seen by tensors as a plain native segment over the same
            // memory), not a copy: asked again, the same address
            assertThat(a.data().isNative()).isTrue();
            assertThat(f.tensor("a").data().address()).isEqualTo(a.data().address());
        }
    }

    @Test
    void perTensorMappingMapsOnlyWhatIsAskedFor() throws IOException {
        Path f = writeSample();
        try (SafetensorsFile s = SafetensorsFile.open(f, SafetensorsFile.Mapping.PER_TENSOR)) {
            assertThat(s.mappedBytes()).isZero();
            assertThat(s.tensor("b").toFloatArray()).containsExactly(10, 11, 12, 13);
            assertThat(s.mappedBytes()).isEqualTo(8);
            s.tensor("b");
            assertThat(s.mappedBytes()).isEqualTo(8);
            assertThat(s.tensor("a").toFloatArray()).containsExactly(0, 1, 2, 3, 4, 5);
            assertThat(s.mappedBytes()).isEqualTo(8 + 24);
        }
        try (SafetensorsFile s = SafetensorsFile.open(f)) {
            assertThat(s.mappedBytes()).isEqualTo(24 + 8 + 4);
        }
    }

    @Test
    void missingFileNamesIt() {
        assertThatThrownBy(() -> SafetensorsFile.open(dir.resolve("nope.safetensors")))
                .isInstanceOf(CheckpointException.class).hasMessageContaining("nope.safetensors").hasMessageContaining("not found");
    }

    @Test
    void truncatedFileIsRefused() throws IOException {
        Path f = writeSample();
        byte[] all = Files.readAllBytes(f);
        Files.write(f, Arrays.copyOf(all, all.length - 3));
        assertThatThrownBy(() -> SafetensorsFile.open(f)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors").hasMessageContaining("tensor 'c'").hasMessageContaining("truncated");
        Files.write(f, Arrays.copyOf(all, 5));
        assertThatThrownBy(() -> SafetensorsFile.open(f)).hasMessageContaining("truncated");
        Files.write(f, Arrays.copyOf(all, 40));
        assertThatThrownBy(() -> SafetensorsFile.open(f)).hasMessageContaining("truncated");
    }

    @Test
    void headerThatLiesAboutOffsetsIsRefused() throws IOException {
        Path f = writeRaw("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,64]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(f)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("raw.safetensors").hasMessageContaining("tensor 'w'").hasMessageContaining("outside");
        Path g = writeRaw("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(g)).hasMessageContaining("overlaps");
    }

    @Test
    void headerThatLiesAboutDtypeIsRefused() throws IOException {
        // BF16 [4] needs 8 bytes, the entry spans 16 (it was F32)
        Path f = writeRaw("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(f)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("tensor 'w'").hasMessageContaining("BF16");
    }

    @Test
    void unknownDtypeIsRefusedWhenUsed() throws IOException {
        Path f = writeRaw("{\"w\":{\"dtype\":\"Q9_X\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
        try (SafetensorsFile s = SafetensorsFile.open(f)) {
            assertThatThrownBy(() -> s.tensor("w")).isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("raw.safetensors").hasMessageContaining("tensor 'w'").hasMessageContaining("Q9_X");
        }
    }

    @Test
    void malformedHeaderIsRefused() throws IOException {
        Path f = writeRaw("{\"w\": [1, 2", 0);
        assertThatThrownBy(() -> SafetensorsFile.open(f)).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("raw.safetensors").hasMessageContaining("malformed");
        Path g = writeRaw("{\"w\":{\"dtype\":\"F32\"}}", 0);
        assertThatThrownBy(() -> SafetensorsFile.open(g)).hasMessageContaining("tensor 'w'");
        ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(Long.MAX_VALUE).putLong(0);
        Path h = dir.resolve("huge.safetensors");
        Files.write(h, b.array());
        assertThatThrownBy(() -> SafetensorsFile.open(h)).hasMessageContaining("huge.safetensors");
    }

    @Test
    void missingTensorNamesIt() throws IOException {
        try (SafetensorsFile s = SafetensorsFile.open(writeSample())) {
            assertThatThrownBy(() -> s.tensor("zzz")).hasMessageContaining("model.safetensors").hasMessageContaining("'zzz'");
        }
    }
}
