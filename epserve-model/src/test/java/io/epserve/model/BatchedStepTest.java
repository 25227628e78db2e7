package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * A token's logits do not depend on what else is in its step: several sequences batched in one
 * step, split into overlapped micro-batches, or cached in scattered rows give bitwise the same
 * logits as each sequence alone.
 */
class BatchedStepTest {
    static Stream<String> models() {
        return Fixtures.MODELS.stream();
    }

    /** A cache whose positions live in shuffled rows of a shared pool, as a paged cache's blocks do. */
    static final class ScatteredKvCache implements KvCache {
        private final ContiguousKvCache pool;
        private final int[] rowOf;
        private int length;

        ScatteredKvCache(ModelConfig cfg, int capacity, long seed) {
            pool = new ContiguousKvCache(cfg, capacity);
            pool.reserve(capacity);
            rowOf = new int[capacity];
            for (int i = 0; i < capacity; i++) {
                rowOf[i] = i;
            }
            SplittableRandom r = new SplittableRandom(seed);
            for (int i = capacity - 1; i > 0; i--) {
                int j = r.nextInt(i + 1);
                int t = rowOf[i];
                rowOf[i] = rowOf[j];
                rowOf[j] = t;
            }
        }

        public int length() { return length; }
        public int keyStride() { return pool.keyStride(); }
        public int valueStride() { return pool.valueStride(); }
        public float[] keys(int layer) { return pool.keys(layer); }
        public float[] values(int layer) { return pool.values(layer); }
        public int row(int position) { return rowOf[position]; }
        public boolean contiguous() { return false; }
        public void reserve(int positions) {
            if (positions > rowOf.length) {
                throw new IllegalStateException("test cache full");
            }
        }
        public void advance(int n) { length += n; }
        public void truncate(int newLength) { length = newLength; }
    }

    @ParameterizedTest
    @MethodSource("models")
    void batchedOverlappedAndPagedStepsEqualSingleSequences(String name) {
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults())) {
            MoeTransformer t = m.transformer();
            SplittableRandom r = new SplittableRandom(11);
            int seqs = 4;
            int[][] prompts = new int[seqs][];
            for (int s = 0; s < seqs; s++) {
                prompts[s] = r.ints(3 + 2 * s, 0, m.config().vocabSize()).toArray();
            }
            // alone: prefill, then two decode steps with fixed next tokens
            float[][][] alone = new float[seqs][3][];
            for (int s = 0; s < seqs; s++) {
                KvCache c = t.newCache(16);
                alone[s][0] = t.forward(c, prompts[s], prompts[s].length, false, RoutingListener.NONE);
                alone[s][1] = t.forward(c, new int[] {5 + s}, 1, false, RoutingListener.NONE);
                alone[s][2] = t.forward(c, new int[] {9 + s}, 1, false, RoutingListener.NONE);
            }
            for (boolean overlap : new boolean[] {false, true}) {
                for (boolean scattered : new boolean[] {false, true}) {
                    t.setOverlap(overlap);
                    List<KvCache> caches = new ArrayList<>();
                    for (int s = 0; s < seqs; s++) {
                        caches.add(scattered ? new ScatteredKvCache(m.config(), 16, s) : t.newCache(16));
                    }
                    List<MoeTransformer.SequenceChunk> prefill = new ArrayList<>();
                    for (int s = 0; s < seqs; s++) {
                        prefill.add(new MoeTransformer.SequenceChunk(caches.get(s), prompts[s], 0, prompts[s].length,
                                MoeTransformer.Logits.LAST));
                    }
                    float[][] got = t.step(prefill, RoutingListener.NONE);
                    for (int step = 1; step <= 2; step++) {
                        for (int s = 0; s < seqs; s++) {
                            assertThat(got[s]).as("%s overlap=%s scattered=%s seq %d step %d", name, overlap, scattered, s, step - 1)
                                    .containsExactly(alone[s][step - 1]);
                        }
                        List<MoeTransformer.SequenceChunk> decode = new ArrayList<>();
                        for (int s = 0; s < seqs; s++) {
                            decode.add(new MoeTransformer.SequenceChunk(caches.get(s), new int[] {(step == 1 ? 5 : 9) + s}, 0, 1,
                                    MoeTransformer.Logits.LAST));
                        }
                        got = t.step(decode, RoutingListener.NONE);
                    }
                    for (int s = 0; s < seqs; s++) {
                        assertThat(got[s]).containsExactly(alone[s][2]);
                    }
                }
            }
            t.setOverlap(false);
        }
    }
}
