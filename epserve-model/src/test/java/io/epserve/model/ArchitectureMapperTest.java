package io.epserve.model;

import io.epserve.moe.GatedActivation;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.CheckpointException;
import io.epserve.tensor.RopeStyle;
import java.io.IOException;
import java.io.InputStream;
import org.junit.jupiter.api.Test;

/** Each architecture's mapper turns published config.json files into the typed parts. */
class ArchitectureMapperTest {

    static ObjectNode published(String name) {
        try (InputStream in = ArchitectureMapperTest.class.getResourceAsStream("/configs/" + name + "/config.json")) {
            return (ObjectNode) new ObjectMapper().readTree(in);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void deepSeekV2LiteIsMlaWithoutQueryLoraAndGreedySoftmaxRouting() {
        ModelConfig c = ModelConfig.from(published("deepseek-v2-lite"));
        assertThat(c.architecture()).isEqualTo(Architecture.DEEPSEEK_V2);
        AttentionConfig.Mla mla = (AttentionConfig.Mla) c.attention();
        assertThat(mla.dims()).isEqualTo(new ModelConfig.Mla(0, 512, 128, 64, 128));
        assertThat(mla.latentWidth()).isEqualTo(576);
        assertThat(c.router()).isEqualTo(new RouterConfig.GroupedSoftmax(64, 6, 1, 1, false, 1f));
        assertThat(c.isSparse(0)).isFalse();
        assertThat(c.isSparse(1)).isTrue();
        assertThat(c.sharedIntermediate()).isEqualTo(2 * 1408);
        assertThat(c.ropeStyle()).isEqualTo(RopeStyle.INTERLEAVED);
        assertThat(c.ropeScaling().factor()).isEqualTo(40.0);
        // the flat accessors read through
        assertThat(c.heads()).isEqualTo(16);
        assertThat(c.kvHeads()).isEqualTo(16);
        assertThat(c.headDim()).isEqualTo(192);
        assertThat(c.routerKind()).isEqualTo(ModelConfig.RouterKind.SOFTMAX_GROUPED_TOPK);
    }

    @Test
    void deepSeekV2GroupLimitedGreedyNeedsItsGroups() {
        ObjectNode j = published("deepseek-v2-lite");
        j.put("topk_method", "group_limited_greedy").put("n_group", 8).put("topk_group", 3).put("routed_scaling_factor", 16.0);
        assertThat(ModelConfig.from(j).router()).isEqualTo(new RouterConfig.GroupedSoftmax(64, 6, 8, 3, false, 16f));
        j.put("n_group", 7);
        assertThatThrownBy(() -> ModelConfig.from(j)).isInstanceOf(CheckpointException.class).hasMessageContaining("n_group 7");
        j.put("topk_method", "noaux_tc");
        assertThatThrownBy(() -> ModelConfig.from(j)).isInstanceOf(CheckpointException.class).hasMessageContaining("'noaux_tc'");
        ObjectNode s = published("deepseek-v2-lite");
        s.put("scoring_func", "sigmoid");
        assertThatThrownBy(() -> ModelConfig.from(s)).isInstanceOf(CheckpointException.class).hasMessageContaining("'sigmoid'");
    }

    @Test
    void moeLayerFrequencyAndFirstDenseLayers() {
        ObjectNode j = published("deepseek-v2-lite");
        j.put("num_hidden_layers", 6).put("first_k_dense_replace", 1).put("moe_layer_freq", 2);
        assertThat(ModelConfig.from(j).sparseLayers()).containsExactly(false, false, true, false, true, false);
    }

    @Test
    void gptOssAlternatesSlidingAndFullAttentionWithSinksAndABiasedRouter() {
        ModelConfig c = ModelConfig.from(published("gpt-oss-20b"));
        assertThat(c.architecture()).isEqualTo(Architecture.GPT_OSS);
        AttentionConfig.Gqa a = (AttentionConfig.Gqa) c.attention();
        assertThat(a.sinks()).isTrue();
        assertThat(a.qkvBias()).isTrue();
        assertThat(a.oBias()).isTrue();
        assertThat(c.window(0)).isEqualTo(128);
        assertThat(c.window(1)).isZero();
        assertThat(c.window(22)).isEqualTo(128);
        assertThat(c.window(23)).isZero();
        assertThat(c.slidingWindow()).isEqualTo(128);
        assertThat(c.router()).isEqualTo(new RouterConfig.TopKSoftmax(32, 4));
        assertThat(c.ffn().activation()).isEqualTo(new GatedActivation.ClampedSwiGlu(1.702f, 7f));
        assertThat(c.ffn().expertBias()).isTrue();
        assertThat(c.headDim()).isEqualTo(64);
        assertThat(c.ropeScaling().truncate()).isFalse();
        ObjectNode bad = published("gpt-oss-20b");
        bad.withArray("layer_types").set(3, "chunked_attention");
        assertThatThrownBy(() -> ModelConfig.from(bad)).isInstanceOf(CheckpointException.class).hasMessageContaining("layer_types[3]");
    }

    @Test
    void theFlatConstructorBuildsTheSameParts() {
        ModelConfig c = ModelConfig.from(published("deepseek-v2-lite"));
        ModelConfig flat = new ModelConfig(c.architecture(), c.vocabSize(), c.hidden(), c.layers(), c.heads(), c.kvHeads(), c.headDim(),
                c.rmsEps(), c.ropeTheta(), c.ropeScaling(), c.ropeStyle(), c.maxPositions(), c.tieEmbeddings(), c.qkvBias(), c.qkNorm(),
                c.clipQkv(), c.slidingWindow(), c.mla(), c.denseIntermediate(), c.numExperts(), c.topK(), c.moeIntermediate(),
                c.sparseLayers(), c.routerKind(), c.normTopkProb(), c.nGroup(), c.topkGroup(), c.routedScalingFactor(),
                c.sharedIntermediate(), c.sharedExpertGate(), c.bosTokenId(), c.eosTokenIds());
        assertThat(flat.attention()).isEqualTo(c.attention());
        assertThat(flat.router()).isEqualTo(c.router());
        assertThat(flat.ffn()).isEqualTo(c.ffn());
        ModelConfig mixtral = ModelConfig.from(ModelConfigTest.config("mixtral"));
        ModelConfig flatGqa = new ModelConfig(mixtral.architecture(), mixtral.vocabSize(), mixtral.hidden(), mixtral.layers(),
                mixtral.heads(), mixtral.kvHeads(), mixtral.headDim(), mixtral.rmsEps(), mixtral.ropeTheta(), mixtral.ropeScaling(),
                mixtral.ropeStyle(), mixtral.maxPositions(), mixtral.tieEmbeddings(), mixtral.qkvBias(), mixtral.qkNorm(),
                mixtral.clipQkv(), mixtral.slidingWindow(), mixtral.mla(), mixtral.denseIntermediate(), mixtral.numExperts(),
                mixtral.topK(), mixtral.moeIntermediate(), mixtral.sparseLayers(), mixtral.routerKind(), mixtral.normTopkProb(),
                mixtral.nGroup(), mixtral.topkGroup(), mixtral.routedScalingFactor(), mixtral.sharedIntermediate(),
                mixtral.sharedExpertGate(), mixtral.bosTokenId(), mixtral.eosTokenIds());
        assertThat(flatGqa).isEqualTo(mixtral);
    }
}
