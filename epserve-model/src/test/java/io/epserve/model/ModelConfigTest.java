package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import org.junit.jupiter.api.Test;

class ModelConfigTest {
    static ObjectNode config(String fixture) {
        return (ObjectNode) Checkpoint.readJson(Fixtures.model(fixture).resolve("config.json")).deepCopy();
    }

    @Test
    void readsEveryFixtureArchitecture() {
        assertThat(ModelConfig.from(config("mixtral")).architecture()).isEqualTo(Architecture.MIXTRAL);
        ModelConfig ds = ModelConfig.from(config("deepseek_v3"));
        assertThat(ds.mla().qLoraRank()).isEqualTo(32);
        assertThat(ds.isSparse(0)).isFalse();
        assertThat(ds.isSparse(1)).isTrue();
        assertThat(ds.sharedIntermediate()).isEqualTo(64);
        ModelConfig q3 = ModelConfig.from(config("qwen3_moe"));
        assertThat(q3.headDim()).isEqualTo(64);
        assertThat(q3.qkNorm()).isEqualTo(ModelConfig.QkNorm.PER_HEAD);
    }

    @Test
    void qwenSparseLayersFollowStepAndMlpOnlyLayers() {
        ObjectNode c = config("qwen2_moe");
        c.put("decoder_sparse_step", 2);
        c.putArray("mlp_only_layers").add(1);
        ModelConfig cfg = ModelConfig.from(c);
        assertThat(cfg.sparseLayers()).containsExactly(false, false, false);
        c.put("decoder_sparse_step", 1);
        assertThat(ModelConfig.from(c).sparseLayers()).containsExactly(true, false, true);
    }

    @Test
    void readsTransformers5RopeParameters() {
        ObjectNode c = config("mixtral");
        c.remove("rope_theta");
        c.putObject("rope_parameters").put("rope_type", "default").put("rope_theta", 123456.0);
        assertThat(ModelConfig.from(c).ropeTheta()).isEqualTo(123456.0);
        ObjectNode d = config("deepseek_v3");
        d.remove("rope_scaling");
        d.putObject("rope_parameters").put("rope_type", "yarn").put("rope_theta", 10000.0).put("factor", 40.0)
                .put("original_max_position_embeddings", 4096).put("mscale", 1.0).put("mscale_all_dim", 1.0);
        assertThat(ModelConfig.from(d).ropeScaling().factor()).isEqualTo(40.0);
    }

    @Test
    void refusesUnsupportedRopeScaling() {
        ObjectNode c = config("mixtral");
        c.putObject("rope_scaling").put("rope_type", "longrope").put("factor", 2.0);
        assertThatThrownBy(() -> ModelConfig.from(c)).isInstanceOf(CheckpointException.class).hasMessageContaining("longrope");
    }

    @Test
    void refusesInconsistentHeads() {
        ObjectNode c = config("mixtral");
        c.put("num_key_value_heads", 3);
        assertThatThrownBy(() -> ModelConfig.from(c)).hasMessageContaining("num_key_value_heads");
        ObjectNode d = config("mixtral");
        d.put("num_experts_per_tok", 9);
        assertThatThrownBy(() -> ModelConfig.from(d)).hasMessageContaining("num_experts_per_tok");
        ObjectNode e = config("mixtral");
        e.remove("hidden_size");
        assertThatThrownBy(() -> ModelConfig.from(e)).hasMessageContaining("'hidden_size' is missing");
        assertThat(new ObjectMapper()).isNotNull();
    }
}
