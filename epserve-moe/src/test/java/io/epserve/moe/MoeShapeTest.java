package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class MoeShapeTest {
    /** Layer 0 dense, layers 1 and 2 sparse, 4 experts each. */
    private static final MoeShape SHAPE = new MoeShape(new boolean[] {false, true, true}, 4, 16, 8);

    @Test
    void aSelectionComesBackSortedWithARowPerLayer() {
        int[][] got = SHAPE.checkExperts(new int[][] {null, {3, 0, 2}});
        assertThat(got).hasNumberOfRows(3);
        assertThat(got[0]).isEmpty();
        assertThat(got[1]).containsExactly(0, 2, 3);
        assertThat(got[2]).isEmpty();
        for (int[] row : SHAPE.checkExperts(new int[0][])) {
            assertThat(row).isEmpty();
        }
    }

    @Test
    void aBadSelectionIsRefusedNamingTheLayerOrExpert() {
        assertThatThrownBy(() -> SHAPE.checkExperts(new int[][] {{}, {}, {}, {0}}))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("layer 3 outside [0, 3)");
        assertThatThrownBy(() -> SHAPE.checkExperts(new int[][] {{1}}))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("layer 0 has no routed experts");
        assertThatThrownBy(() -> SHAPE.checkExperts(new int[][] {{}, {4}}))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("expert 4 of layer 1 outside [0, 4)");
        assertThatThrownBy(() -> SHAPE.checkExperts(new int[][] {{}, {}, {-1}}))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("expert -1 of layer 2 outside [0, 4)");
        assertThatThrownBy(() -> SHAPE.checkExperts(new int[][] {{}, {2, 1, 2}}))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("expert 2 of layer 1 listed twice");
    }

    @Test
    void theCallersArraysAreNeitherKeptNorChanged() {
        boolean[] sparse = {true, false};
        MoeShape s = new MoeShape(sparse, 2, 8, 4);
        sparse[1] = true;
        assertThat(s.isSparse(1)).isFalse();
        s.sparseLayers()[1] = true;
        assertThat(s.isSparse(1)).isFalse();
        int[][] wanted = {{1, 0}};
        s.checkExperts(wanted);
        assertThat(wanted[0]).containsExactly(1, 0);
        MoeShape same = new MoeShape(new boolean[] {true, false}, 2, 8, 4);
        assertThat(s).isEqualTo(same).hasSameHashCodeAs(same);
        assertThat(s).isNotEqualTo(new MoeShape(new boolean[] {true, true}, 2, 8, 4));
    }

    @Test
    void layersOutsideTheModelAreNotSparse() {
        assertThat(SHAPE.layers()).isEqualTo(3);
        assertThat(SHAPE.isSparse(1)).isTrue();
        assertThat(SHAPE.isSparse(0)).isFalse();
        assertThat(SHAPE.isSparse(-1)).isFalse();
        assertThat(SHAPE.isSparse(3)).isFalse();
        assertThatThrownBy(() -> new MoeShape(new boolean[] {true}, 4, 0, 8)).isInstanceOf(IllegalArgumentException.class);
    }
}
