package io.epserve.format.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Each way a GGUF file can be bad gets one clear error naming the tensor or key at fault. */
class GgufCorruptFileTest {
    static final String FILE = "synth-moe-q8_0.gguf";
    static final String TENSOR = "blk.0.attn_q.weight";

    @TempDir
    Path tmp;

    private byte[] original() throws IOException {
        return Files.readAllBytes(GgufFixtures.dir().resolve(FILE));
    }

    private Path write(byte[] bytes) throws IOException {
        Path p = tmp.resolve("bad.gguf");
        Files.write(p, bytes);
        return p;
    }

    private static int indexOf(byte[] hay, String needle) {
        byte[] n = needle.getBytes(StandardCharsets.UTF_8);
        outer:
        for (int i = 0; i + n.length <= hay.length; i++) {
            for (int j = 0; j < n.length; j++) {
                if (hay[i + j] != n[j]) {
                    continue outer;
                }
            }
            return i;
        }
        throw new AssertionError(needle + " not in the file");
    }

    /** Byte position of a tensor's type field in the directory: name, n_dims u32, ne, then type u32 and offset u64. */
    private static int typeField(byte[] b, String tensor) {
        int name = indexOf(b, tensor);
        int nDims = ByteBuffer.wrap(b, name + tensor.length(), 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        return name + tensor.length() + 4 + 8 * nDims;
    }

    private static void putU32(byte[] b, int at, int v) {
        ByteBuffer.wrap(b, at, 4).order(ByteOrder.LITTLE_ENDIAN).putInt(v);
    }

    private static void putU64(byte[] b, int at, long v) {
        ByteBuffer.wrap(b, at, 8).order(ByteOrder.LITTLE_ENDIAN).putLong(v);
    }

    @Test
    void theUnchangedCopyOpens() throws IOException {
        try (GgufFile g = GgufFile.open(write(original()))) {
            assertThat(g.tensors()).containsKey(TENSOR);
        }
    }

    @Test
    void truncatedDataNamesTheTensorCut() throws IOException {
        byte[] b = original();
        assertThatThrownBy(() -> GgufFile.open(write(Arrays.copyOf(b, b.length - 1000))))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("bad.gguf: tensor '")
                .hasMessageContaining("truncated file");
    }

    @Test
    void truncatedHeaderSaysWhereItEnds() throws IOException {
        byte[] b = original();
        assertThatThrownBy(() -> GgufFile.open(write(Arrays.copyOf(b, indexOf(b, TENSOR) + 3))))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("bad.gguf: truncated GGUF header")
                .hasMessageContaining("name of tensor");
    }

    @Test
    void anOffsetPastTheEndNamesTheTensor() throws IOException {
        byte[] b = original();
        putU64(b, typeField(b, TENSOR) + 4, 1L << 36);
        assertThatThrownBy(() -> GgufFile.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("tensor '" + TENSOR + "'")
                .hasMessageContaining("lying tensor directory");
    }

    @Test
    void aMisalignedOffsetNamesTheTensor() throws IOException {
        byte[] b = original();
        int at = typeField(b, TENSOR) + 4;
        long off = ByteBuffer.wrap(b, at, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        putU64(b, at, off + 1);
        assertThatThrownBy(() -> GgufFile.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("tensor '" + TENSOR + "': offset " + (off + 1) + " is not a multiple of the alignment 32");
    }

    @Test
    void overlappingTensorsAreNamed() throws IOException {
        byte[] b = original();
        int qOff = typeField(b, TENSOR) + 4;
        int kOff = typeField(b, "blk.0.attn_k.weight") + 4;
        System.arraycopy(b, qOff, b, kOff, 8);
        assertThatThrownBy(() -> GgufFile.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("overlaps")
                .hasMessageContaining("blk.0.attn_k.weight");
    }

    @Test
    void anUnknownTypeNamesTheTensorAndTheType() throws IOException {
        byte[] b = original();
        putU32(b, typeField(b, TENSOR), 99);
        assertThatThrownBy(() -> GgufFile.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessage("bad.gguf: tensor '" + TENSOR + "' has unknown ggml type 99");
    }

    @Test
    void aKnownTypeEpserveDoesNotReadIsRefusedWhenUsedNamingIt() throws IOException {
        byte[] b = original();
        // Q4_1 has Q8_0's block size (32) but 20 bytes a block: it fits in the Q8_0 bytes, so the file opens
        putU32(b, typeField(b, TENSOR), GgmlType.Q4_1.id());
        try (Checkpoint c = Checkpoint.open(write(b))) {
            assertThatThrownBy(() -> c.tensor("model.layers.0.self_attn.q_proj.weight"))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("tensor '" + TENSOR + "' has ggml type Q4_1, which epserve does not read");
        }
    }

    @Test
    void aMissingKeyIsNamed() throws IOException {
        byte[] b = original();
        int at = indexOf(b, "llama.block_count");
        b[at + "llama.block_count".length() - 1] = 'X';
        assertThatThrownBy(() -> Checkpoint.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessage("bad.gguf: metadata key 'llama.block_count' is missing");
    }

    @Test
    void anArrayLongerThanTheFileIsRefusedBeforeAllocatingIt() throws IOException {
        byte[] b = original();
        // tokenizer.ggml.tokens: key, value type u32 (ARRAY), item type u32 (STRING), then the count u64
        int count = indexOf(b, "tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".length() + 8;
        putU64(b, count, Integer.MAX_VALUE - 8);
        assertThatThrownBy(() -> GgufFile.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("bad.gguf: truncated GGUF header: the file ends inside the array of metadata key 'tokenizer.ggml.tokens'");
    }

    @Test
    void notAGgufFile() throws IOException {
        assertThatThrownBy(() -> GgufFile.open(write("{\"not\": \"gguf\"}".getBytes(StandardCharsets.UTF_8))))
                .isInstanceOf(CheckpointException.class)
                .hasMessage("bad.gguf: not a GGUF file (no GGUF magic at byte 0)");
    }

    @Test
    void anUnsupportedArchitectureListsTheSupportedOnes() throws IOException {
        byte[] b = original();
        // "llama" → "gemma" as the value of general.architecture (the first "llama" string value in the file)
        int key = indexOf(b, "general.architecture");
        int value = key + "general.architecture".length() + 4 + 8;
        System.arraycopy("gemma".getBytes(StandardCharsets.UTF_8), 0, b, value, 5);
        assertThatThrownBy(() -> Checkpoint.open(write(b)))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("GGUF architecture 'gemma' is not supported; supported: llama, qwen2moe, qwen3moe, olmoe, deepseek2");
    }
}
