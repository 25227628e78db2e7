package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.MappedExperts;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Set;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** What an expert worker maps through {@link ModelExperts}: exactly the experts asked for, each set on its own. */
class ModelExpertsTest {
    static final Path MODEL = Fixtures.model("mixtral");

    Checkpoint header;
    ModelConfig cfg;
    CheckpointExperts reference;
    int layer;

    @BeforeEach
    void open() {
        header = Checkpoint.open(MODEL, SafetensorsFile.Mapping.PER_TENSOR);
        cfg = ModelConfig.from(header.config());
        reference = new CheckpointExperts(cfg, header);
        layer = IntStream.range(0, cfg.layers()).filter(cfg::isSparse).findFirst().orElseThrow();
    }

    @AfterEach
    void close() {
        header.close();
    }

    /** {@code experts} of the first sparse layer, as a selection. */
    int[][] wanted(int... experts) {
        int[][] w = new int[layer + 1][];
        w[layer] = experts;
        return w;
    }

    /** Bytes of the tensors that hold these experts of the first sparse layer, from the header. */
    long bytesOf(int... experts) {
        Set<String> tensors = new LinkedHashSet<>();
        for (int e : experts) {
            tensors.addAll(reference.tensorNames(layer, e));
        }
        return tensors.stream().mapToLong(n -> header.entry(n).end() - header.entry(n).begin()).sum();
    }

    static void assertSameWeights(ExpertWeights got, ExpertWeights want) {
        assertThat(got.gate().data().mismatch(want.gate().data())).isEqualTo(-1);
        assertThat(got.up().data().mismatch(want.up().data())).isEqualTo(-1);
        assertThat(got.down().data().mismatch(want.down().data())).isEqualTo(-1);
    }

    @Test
    void mapsExactlyTheExpertsAskedFor() {
        try (ModelExperts source = ModelExperts.open(MODEL, null, null)) {
            assertThat(source.shape()).isEqualTo(cfg.moeShape());
            try (MappedExperts m = source.map(wanted(1, 0), null)) {
                assertThat(m.holds(layer, 0)).isTrue();
                assertThat(m.holds(layer, 1)).isTrue();
                assertThat(m.holds(layer, 2)).isFalse();
                assertThat(m.holds(layer + 1, 0)).isFalse();
                assertThatThrownBy(() -> m.expert(layer, 2)).isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("expert 2 of layer " + layer);
                assertThat(m.mappedBytes()).as("the two experts' tensors and nothing else").isEqualTo(bytesOf(0, 1));
                assertThat(m.fromConvertedCache()).isFalse();
                assertSameWeights(m.expert(layer, 0), reference.expert(layer, 0));
            }
        }
    }

    @Test
    void aSetOutlivesTheSetItReplaced() {
        try (ModelExperts source = ModelExperts.open(MODEL, null, null)) {
            MappedExperts before = source.map(wanted(0, 1), null);
            MappedExperts after;
            try {
                after = source.map(wanted(1, 2), before);
            } finally {
                before.close();
            }
            try (after) {
                assertThat(after.holds(layer, 0)).isFalse();
                assertThat(after.mappedBytes()).isEqualTo(bytesOf(1, 2));
                // expert 1 was kept across the change: still readable once the old set is unmapped
                assertSameWeights(after.expert(layer, 1), reference.expert(layer, 1));
                assertSameWeights(after.expert(layer, 2), reference.expert(layer, 2));
            }
        }
    }

    @Test
    void aBadSelectionIsRefusedBeforeAnythingIsMapped() {
        try (ModelExperts source = ModelExperts.open(MODEL, null, null)) {
            assertThatThrownBy(() -> source.map(wanted(cfg.numExperts()), null)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessage("expert " + cfg.numExperts() + " of layer " + layer + " outside [0, " + cfg.numExperts() + ")");
            // the source still maps after a refusal
            try (MappedExperts m = source.map(wanted(0), null)) {
                assertThat(m.mappedBytes()).isEqualTo(bytesOf(0));
            }
        }
    }
}
