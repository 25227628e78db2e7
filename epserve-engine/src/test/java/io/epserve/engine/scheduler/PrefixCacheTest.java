package io.epserve.engine.scheduler;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Prefix caching in the scheduler, with integers: which blocks a prompt reuses, and that no shared block is ever written. */
class PrefixCacheTest {

    static Scheduler scheduler(int blockSize, int blocks) {
        return new Scheduler(new SchedulerConfig(blockSize, blocks, 512, 8, 8, 1000));
    }

    static int[] tokens(int from, int count) {
        return IntStream.range(from, from + count).toArray();
    }

    static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    /** Runs one step's worth of work: every sampling chunk appends a token. */
    static BatchPlan step(Scheduler s) {
        BatchPlan p = s.schedule();
        SchedulerTest.sampled(s, p);
        return p;
    }

    @Test
    void aSecondPromptWithTheSameFullBlocksStartsAfterThem() {
        Scheduler s = scheduler(4, 64);
        int[] a = concat(tokens(100, 8), tokens(500, 2));
        int[] b = concat(tokens(100, 8), tokens(700, 3));
        s.submit(1, a, 5);
        step(s); // prefill of a: its two full blocks are computed
        s.submit(2, b, 5);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).contains(new BatchPlan.Chunk(2, 8, 3, true, false));
        assertThat(p.reused()).containsExactly(new BatchPlan.Reuse(2, 8));
        int[] ta = s.blockTable(1).toArray();
        int[] tb = s.blockTable(2).toArray();
        assertThat(Arrays.copyOf(tb, 2)).containsExactly(ta[0], ta[1]);
        assertThat(tb[2]).isNotIn(ta[0], ta[1], ta[2]);
        assertThat(s.prefixQueriedTokens()).isEqualTo(10 + 11);
        assertThat(s.prefixHitTokens()).isEqualTo(8);
        assertThat(s.blocksUsed()).isEqualTo(4); // a's 3 blocks and b's own third one; the two shared count once
    }

    @Test
    void theLastPromptTokenIsAlwaysComputedSoTheStepSamples() {
        Scheduler s = scheduler(4, 64);
        s.submit(1, tokens(0, 8), 1);
        step(s);
        s.finish(1);
        s.submit(2, tokens(0, 8), 1);
        BatchPlan p = s.schedule();
        // both blocks are cached, but the second holds the last prompt token: only the first is reused
        assertThat(p.chunks()).containsExactly(new BatchPlan.Chunk(2, 4, 4, true, false));
        assertThat(s.prefixHitTokens()).isEqualTo(4);
    }

    @Test
    void aBlockMatchesOnlyAfterTheSamePrefix() {
        Scheduler s = scheduler(4, 64);
        s.submit(1, concat(tokens(0, 4), tokens(50, 5)), 1);
        step(s);
        // same second block after a different first block: nothing is reused
        s.submit(2, concat(tokens(10, 4), tokens(50, 5)), 1);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).contains(new BatchPlan.Chunk(2, 0, 9, true, false));
        assertThat(s.prefixHitTokens()).isZero();
    }

    @Test
    void finishedPromptsStayCachedUntilTheirBlocksAreNeededLeastRecentlyUsedFirst() {
        Scheduler s = scheduler(4, 6);
        s.submit(1, tokens(0, 9), 1); // blocks of [0..4), [4..8) cached; the third holds the sampled position
        step(s);
        s.finish(1);
        s.submit(2, tokens(100, 9), 1);
        step(s);
        s.finish(2);
        assertThat(s.blocksUsed()).isZero();
        assertThat(s.prefixCachedBlocks()).isEqualTo(4);
        // a prompt of 5 blocks needs every free block (2) and 3 evictions: the oldest cached ones go first
        s.submit(3, tokens(1000, 17), 1);
        step(s);
        s.finish(3);
        // released in reverse table order, so a prompt's tail goes before its head: prompt 2's first block survived
        s.submit(4, tokens(100, 9), 1);
        s.submit(5, tokens(0, 9), 1);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).containsExactly(new BatchPlan.Chunk(4, 4, 5, true, false), new BatchPlan.Chunk(5, 0, 9, true, false));
        assertThat(s.prefixHitTokens()).isEqualTo(4);
    }

    @Test
    void aFailedStepCachesNothingOfWhatItWasToWrite() {
        Scheduler s = scheduler(4, 64);
        s.submit(1, tokens(0, 9), 1);
        s.schedule();
        s.abort(1); // the model step threw: the planned positions hold nothing
        s.submit(2, tokens(0, 9), 1);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).containsExactly(new BatchPlan.Chunk(2, 0, 9, true, false));
        assertThat(s.prefixCachedBlocks()).isZero();
    }

    @Test
    void aSequenceSubmittedWithoutItsTokensNeverTouchesTheCache() {
        Scheduler s = scheduler(4, 64);
        s.submit(1, tokens(0, 9), 1);
        step(s);
        s.finish(1);
        s.submit(2, 9, 1);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).containsExactly(new BatchPlan.Chunk(2, 0, 9, true, false));
        assertThat(s.prefixQueriedTokens()).isEqualTo(9);
    }

    /**
     * Random traffic of prompts from a few families with shared prefixes, small pools (evictions,
     * preemptions, cancels). A simulated KV memory records which token each planned chunk writes
     * where; the checks: a chunk never writes a block another sequence holds, every position a
     * sequence reads (below its chunk's start) holds its own token, and the books balance.
     */
    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
    void sharedBlocksAreNeverWrittenAndAlwaysHoldTheReadersTokens(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int blockSize = 1 + r.nextInt(4);
        int blocks = 12 + r.nextInt(24);
        Scheduler s = new Scheduler(new SchedulerConfig(blockSize, blocks, 4 + r.nextInt(30), 1 + r.nextInt(6), 16, 1000));
        int[][] families = new int[3][];
        for (int f = 0; f < families.length; f++) {
            families[f] = r.ints(blockSize * blocks / 3, 0, 50).toArray();
        }
        int[][] memory = new int[blocks][blockSize];
        for (int[] m : memory) {
            Arrays.fill(m, -1);
        }
        Map<Long, int[]> text = new HashMap<>(); // id -> prompt + generated tokens
        Map<Long, int[]> want = new HashMap<>(); // id -> {prompt, maxTokens, generated}
        long next = 0;
        for (int step = 0; step < 100_000 && (next < 150 || s.hasWork()); step++) {
            while (next < 150 && r.nextInt(3) == 0) {
                int[] fam = families[r.nextInt(families.length)];
                int shared = r.nextInt(fam.length);
                int own = 1 + r.nextInt(blockSize * 2);
                int[] prompt = concat(Arrays.copyOf(fam, shared), r.ints(own, 0, 50).toArray());
                int max = 1 + r.nextInt(blockSize * 3);
                if (s.submit(next, prompt, max) instanceof Admission.Queued) {
                    int[] all = Arrays.copyOf(prompt, prompt.length + max);
                    text.put(next, all);
                    want.put(next, new int[] {prompt.length, max, 0});
                }
                next++;
            }
            if (!s.hasWork()) {
                continue;
            }
            if (r.nextInt(40) == 0 && !want.isEmpty()) {
                s.cancel(want.keySet().iterator().next());
            }
            BatchPlan p = s.schedule();
            for (long id : p.cancelled()) {
                want.remove(id);
            }
            assertThat(p.isEmpty() && s.hasWork()).as("work left but nothing planned: a deadlock").isFalse();
            Set<Integer> distinct = new HashSet<>();
            for (long id : s.runningIds()) {
                for (int b : s.blockTable(id).toArray()) {
                    distinct.add(b);
                }
            }
            assertThat(distinct).hasSize(s.blocksUsed());
            for (BatchPlan.Chunk c : p.chunks()) {
                int[] t = text.get(c.sequence());
                int[] table = s.blockTable(c.sequence()).toArray();
                for (int pos = 0; pos < c.start(); pos++) {
                    assertThat(memory[table[pos / blockSize]][pos % blockSize]).as("seq %d reads position %d", c.sequence(), pos)
                            .isEqualTo(t[pos]);
                }
                for (int pos = c.start(); pos < c.start() + c.count(); pos++) {
                    int block = table[pos / blockSize];
                    for (long other : s.runningIds()) {
                        if (other != c.sequence()) {
                            assertThat(s.blockTable(other).toArray()).as("block %d written by %d is held by %d", block,
                                    c.sequence(), other).doesNotContain(block);
                        }
                    }
                    memory[block][pos % blockSize] = t[pos];
                }
            }
            List<Long> done = new ArrayList<>();
            for (BatchPlan.Chunk c : p.chunks()) {
                if (c.samples()) {
                    int[] w = want.get(c.sequence());
                    text.get(c.sequence())[w[0] + w[2]] = r.nextInt(50);
                    w[2]++;
                    if (w[2] == w[1]) {
                        done.add(c.sequence());
                    } else {
                        s.append(c.sequence());
                    }
                }
            }
            for (long id : done) {
                s.finish(id);
                want.remove(id);
            }
        }
        assertThat(s.hasWork()).isFalse();
        assertThat(want).isEmpty();
        assertThat(s.blocksUsed()).isZero();
        assertThat(s.prefixHitTokens()).as("the families share prefixes").isPositive();
    }
}
