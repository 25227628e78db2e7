package io.epserve.engine.kv;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.engine.TinyModel;
import io.epserve.engine.scheduler.BatchPlan;
import io.epserve.engine.scheduler.BlockTable;
import io.epserve.engine.scheduler.Scheduler;
import io.epserve.engine.scheduler.SchedulerConfig;
import io.epserve.model.KvCache;
import io.epserve.model.KvDtype;
import io.epserve.model.KvOptions;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import java.util.List;
import org.junit.jupiter.api.Test;

class PagedKvCacheTest {

    @Test
    void positionsMapToRowsOfTheirBlocks() {
        // blocks of 4: sequence 9 holds blocks 0 and 1, sequence 1 gets 2, 3 and 4
        Scheduler s = new Scheduler(new SchedulerConfig(4, 5, 100, 4, 4, 100));
        s.submit(9, 6, 1); // takes blocks 0, 1
        s.submit(1, 10, 1); // takes blocks 2, 3, 4
        s.schedule();
        BlockTable table = s.blockTable(1);
        assertThat(table.toArray()).containsExactly(2, 3, 4);
        KvBlockPool pool = new KvBlockPool(2, 3, 5, 4, 5);
        PagedKvCache c = pool.view(table);
        assertThat(c.contiguous()).isFalse();
        assertThat(c.capacity()).isEqualTo(12);
        assertThat(c.row(0)).isEqualTo(8);
        assertThat(c.row(3)).isEqualTo(11);
        assertThat(c.row(4)).isEqualTo(12);
        assertThat(c.row(9)).isEqualTo(17);
        assertThat(c.keyStride()).isEqualTo(3);
        assertThat(c.valueStride()).isEqualTo(5);
        // the per-layer arrays are the pool's, shared by every sequence
        assertThat(c.keys(1)).isSameAs(pool.view(s.blockTable(9)).keys(1)).hasSize(4 * 5 * 3);
        assertThat(c.values(0)).hasSize(4 * 5 * 5);
    }

    @Test
    void reserveOnlyChecksWhatTheSchedulerReserved() {
        Scheduler s = new Scheduler(new SchedulerConfig(4, 5, 100, 4, 4, 100));
        s.submit(1, 5, 1);
        s.schedule();
        PagedKvCache c = new KvBlockPool(1, 2, 2, 4, 5).view(s.blockTable(1));
        c.reserve(8);
        assertThatThrownBy(() -> c.reserve(9)).isInstanceOf(IllegalStateException.class).hasMessageContaining("not reserved");
        c.advance(5);
        assertThat(c.length()).isEqualTo(5);
        assertThatThrownBy(() -> c.advance(4)).isInstanceOf(IllegalStateException.class);
        c.truncate(0);
        assertThat(c.length()).isZero();
        // freed with the sequence: the view has no rows left
        s.finish(1);
        assertThat(c.capacity()).isZero();
        assertThat(s.blocksUsed()).isZero();
    }

    @Test
    void thePoolIsSizedFromAMemoryBudget() {
        try (LoadedModel m = TinyModel.load()) {
            ModelConfig cfg = m.config();
            // tiny: 2 layers, 2 KV heads of 16: 32 floats of keys and of values per position and layer
            long perBlock = KvBlockPool.bytesPerBlock(cfg, 16);
            assertThat(perBlock).isEqualTo(16L * 2 * (32 + 32) * 4);
            assertThat(KvBlockPool.blocksFor(cfg, 16, perBlock * 10 + perBlock - 1)).isEqualTo(10);
            KvBlockPool pool = KvBlockPool.forModel(cfg, 16, perBlock * 3);
            assertThat(pool.totalBlocks()).isEqualTo(3);
            assertThat(pool.bytes()).isEqualTo(perBlock * 3);
            assertThatThrownBy(() -> KvBlockPool.blocksFor(cfg, 16, perBlock - 1)).hasMessageContaining("less than one block");
        }
    }

    @Test
    void aPagedCacheGivesTheSameLogitsAsAContiguousOne() {
        try (LoadedModel m = TinyModel.load()) {
            MoeTransformer t = m.transformer();
            int[] prompt = {5, 17, 300, 42, 8, 9, 100, 101, 7};
            KvCache contiguous = t.newCache(16);
            float[] want = t.forward(contiguous, prompt, prompt.length, false, RoutingListener.NONE);
            float[] wantNext = t.forward(contiguous, new int[] {77}, 1, false, RoutingListener.NONE);

            // another sequence holds block 0, so this one's blocks are not at row 0
            Scheduler s = new Scheduler(new SchedulerConfig(2, 16, 100, 4, 4, 100));
            KvBlockPool pool = KvBlockPool.forModel(m.config(), 2, KvBlockPool.bytesPerBlock(m.config(), 2) * 16);
            s.submit(0, 1, 1);
            s.submit(1, prompt.length, 2);
            s.schedule();
            PagedKvCache paged = pool.view(s.blockTable(1));
            float[] got = t.step(List.of(new MoeTransformer.SequenceChunk(paged, prompt, 0, prompt.length, MoeTransformer.Logits.LAST)),
                    RoutingListener.NONE)[0];
            assertThat(got).containsExactly(want);
            s.finish(0);
            s.append(1);
            BatchPlan p = s.schedule();
            assertThat(p.chunks()).hasSize(1);
            float[] gotNext = t.forward(paged, new int[] {77}, 1, false, RoutingListener.NONE);
            assertThat(gotNext).containsExactly(wantNext);
        }
    }

    @Test
    void aBf16PoolHoldsHalfTheBytesAndGivesTheContiguousBf16Logits() {
        try (LoadedModel m = LoadedModel.load(TinyModel.dir(),
                LoadedModel.Options.defaults().withKv(KvOptions.defaults().withDtype(KvDtype.BF16)))) {
            MoeTransformer t = m.transformer();
            assertThat(KvBlockPool.bytesPerBlock(t.kvLayout(), 16) * 2).isEqualTo(KvBlockPool.bytesPerBlock(m.config(), 16));
            int[] prompt = {5, 17, 300, 42, 8, 9, 100, 101, 7};
            float[] want = t.forward(t.newCache(16), prompt, prompt.length, false, RoutingListener.NONE);
            Scheduler s = new Scheduler(new SchedulerConfig(2, 16, 100, 4, 4, 100));
            KvBlockPool pool = KvBlockPool.forLayout(t.kvLayout(), 2, KvBlockPool.bytesPerBlock(t.kvLayout(), 2) * 16);
            assertThat(pool.totalBlocks()).isEqualTo(16);
            s.submit(0, 1, 1);
            s.submit(1, prompt.length, 2);
            s.schedule();
            PagedKvCache paged = pool.view(s.blockTable(1));
            assertThat(paged.dtype()).isEqualTo(KvDtype.BF16);
            float[] got = t.step(List.of(new MoeTransformer.SequenceChunk(paged, prompt, 0, prompt.length, MoeTransformer.Logits.LAST)),
                    RoutingListener.NONE)[0];
            assertThat(got).containsExactly(want);
            // an f32 pool does not fit a bf16 transformer
            PagedKvCache f32 = KvBlockPool.forModel(m.config(), 2, KvBlockPool.bytesPerBlock(m.config(), 2) * 16).view(s.blockTable(1));
            assertThatThrownBy(() -> t.step(List.of(new MoeTransformer.SequenceChunk(f32, prompt, 0, 1, MoeTransformer.Logits.LAST)),
                    RoutingListener.NONE)).hasMessageContaining("does not fit");
        }
    }
}
