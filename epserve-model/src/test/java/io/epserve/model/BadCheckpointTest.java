package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.format.SafetensorsWriter;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A model directory with one thing wrong is refused at load, with a message naming the file and tensor. */
class BadCheckpointTest {
    @TempDir
    Path dir;

    /** Copies the mixtral fixture, letting {@code edit} change the tensor list (name/shape) before writing. */
    static void copyFixture(Path dst, UnaryOperator<List<SafetensorsWriter.Spec>> edit, String poisonTensor) throws IOException {
        Path src = Fixtures.model("mixtral");
        for (String f : List.of("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")) {
            Files.copy(src.resolve(f), dst.resolve(f));
        }
        try (Checkpoint c = Checkpoint.open(src)) {
            List<SafetensorsWriter.Spec> specs = new ArrayList<>();
            List<Tensor> tensors = new ArrayList<>();
            for (String n : c.names()) {
                Tensor t = c.tensor(n);
                specs.add(new SafetensorsWriter.Spec(n, t.dtype(), t.shape()));
                tensors.add(t);
            }
            List<SafetensorsWriter.Spec> edited = edit.apply(specs);
            SafetensorsWriter.write(dst.resolve("model.safetensors"), edited, (i, spec, seg) -> {
                int orig = indexOf(specs, spec.name());
                if (orig >= 0 && specs.get(orig).bytes() == spec.bytes()) {
                    MemorySegment.copy(tensors.get(orig).data(), 0, seg, 0, spec.bytes());
                }
                if (spec.name().equals(poisonTensor)) {
                    seg.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 10, Numerics.floatToBf16(Float.NaN));
                }
            });
        }
    }

    private static int indexOf(List<SafetensorsWriter.Spec> specs, String name) {
        for (int i = 0; i < specs.size(); i++) {
            if (specs.get(i).name().equals(name)) {
                return i;
            }
        }
        return -1;
    }

    private void load() {
        try (LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults())) {
            m.config();
        }
    }

    @Test
    void missingTensor() throws IOException {
        String gone = "model.layers.1.block_sparse_moe.experts.5.w2.weight";
        copyFixture(dir, specs -> specs.stream().filter(s -> !s.name().equals(gone)).toList(), null);
        assertThatThrownBy(this::load).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors").hasMessageContaining("missing tensor '" + gone + "'");
    }

    @Test
    void tensorOfTheWrongShape() throws IOException {
        String bad = "model.layers.0.self_attn.k_proj.weight";
        copyFixture(dir, specs -> specs.stream().map(s -> s.name().equals(bad)
                ? new SafetensorsWriter.Spec(s.name(), s.dtype(), new long[] {128, 64}) : s).toList(), null);
        assertThatThrownBy(this::load).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors").hasMessageContaining("'" + bad + "'")
                .hasMessageContaining("[128, 64]").hasMessageContaining("expected [64, 128]");
    }

    @Test
    void nanInWeights() throws IOException {
        String bad = "model.layers.2.block_sparse_moe.gate.weight";
        copyFixture(dir, UnaryOperator.identity(), bad);
        assertThatThrownBy(this::load).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors").hasMessageContaining("'" + bad + "'").hasMessageContaining("non-finite");
    }

    @Test
    void unknownArchitectureListsTheSupportedOnes() throws IOException {
        copyFixture(dir, UnaryOperator.identity(), null);
        String cfg = Files.readString(dir.resolve("config.json")).replace("MixtralForCausalLM", "LlamaForCausalLM");
        Files.writeString(dir.resolve("config.json"), cfg);
        assertThatThrownBy(this::load).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("config.json").hasMessageContaining("'LlamaForCausalLM'")
                .hasMessageContaining("MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, GptOssForCausalLM");
    }

    @Test
    void badConfigValueIsNamed() throws IOException {
        copyFixture(dir, UnaryOperator.identity(), null);
        String cfg = Files.readString(dir.resolve("config.json")).replace("\"num_local_experts\": 8", "\"num_local_experts\": \"eight\"");
        Files.writeString(dir.resolve("config.json"), cfg);
        assertThatThrownBy(this::load).isInstanceOf(CheckpointException.class)
                .hasMessageContaining("config.json").hasMessageContaining("num_local_experts");
    }
}
