package io.epserve.engine.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class BlockAllocatorTest {
    @Test
    void handsOutEveryBlockOnceThenReportsExhaustion() {
        BlockAllocator a = new BlockAllocator(3);
        assertThat(a.total()).isEqualTo(3);
        assertThat(a.allocate()).isEqualTo(0);
        assertThat(a.allocate()).isEqualTo(1);
        assertThat(a.allocate()).isEqualTo(2);
        assertThat(a.used()).isEqualTo(3);
        assertThat(a.free()).isZero();
        assertThat(a.canAllocate(1)).isFalse();
        assertThat(a.allocate()).isEqualTo(BlockAllocator.NONE);
    }

    @Test
    void freedBlocksAreReusedMostRecentFirst() {
        BlockAllocator a = new BlockAllocator(4);
        for (int i = 0; i < 4; i++) {
            a.allocate();
        }
        a.free(1);
        a.free(3);
        assertThat(a.used()).isEqualTo(2);
        assertThat(a.canAllocate(2)).isTrue();
        assertThat(a.canAllocate(3)).isFalse();
        assertThat(a.allocate()).isEqualTo(3);
        assertThat(a.allocate()).isEqualTo(1);
        assertThat(a.allocate()).isEqualTo(BlockAllocator.NONE);
    }

    @Test
    void rejectsDoubleFreeAndForeignIds() {
        BlockAllocator a = new BlockAllocator(2);
        int b = a.allocate();
        a.free(b);
        assertThatThrownBy(() -> a.free(b)).isInstanceOf(IllegalStateException.class).hasMessageContaining("twice");
        assertThatThrownBy(() -> a.free(2)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("outside");
        assertThatThrownBy(() -> new BlockAllocator(0)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void blockTableFreesAllItsBlocks() {
        BlockAllocator a = new BlockAllocator(5);
        BlockTable t = new BlockTable();
        for (int i = 0; i < 5; i++) {
            t.add(a.allocate());
        }
        assertThat(t.toArray()).containsExactly(0, 1, 2, 3, 4);
        assertThat(t.block(4)).isEqualTo(4);
        t.freeAll(a);
        assertThat(t.size()).isZero();
        assertThat(a.used()).isZero();
        assertThatThrownBy(() -> t.block(0)).isInstanceOf(IndexOutOfBoundsException.class);
    }
}
