package io.epserve.engine.scheduler;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The scheduler with integers only: ids, token counts, blocks. */
class SchedulerTest {

    static Scheduler scheduler(int blockSize, int blocks, int budget, int maxRunning, int maxWaiting) {
        return new Scheduler(new SchedulerConfig(blockSize, blocks, budget, maxRunning, maxWaiting, 1000));
    }

    static BatchPlan.Chunk chunk(long id, int start, int count, boolean samples, boolean decode) {
        return new BatchPlan.Chunk(id, start, count, samples, decode);
    }

    /** What the engine does after a step: append a token for each sampling chunk. */
    static void sampled(Scheduler s, BatchPlan plan) {
        for (BatchPlan.Chunk c : plan.chunks()) {
            if (c.samples()) {
                s.append(c.sequence());
            }
        }
    }

    @Test
    void newRequestsJoinInArrivalOrderAtTheNextStep() {
        Scheduler s = scheduler(4, 100, 512, 8, 8);
        assertThat(s.submit(1, 3, 5)).isEqualTo(new Admission.Queued(1));
        assertThat(s.submit(2, 5, 5)).isEqualTo(new Admission.Queued(2));
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 0, 3, true, false), chunk(2, 0, 5, true, false));
        sampled(s, p);
        s.submit(3, 2, 5);
        p = s.schedule();
        // the decodes of 1 and 2, and 3 joins the running batch
        assertThat(p.chunks()).containsExactly(chunk(1, 3, 1, true, true), chunk(2, 5, 1, true, true), chunk(3, 0, 2, true, false));
        assertThat(s.runningIds()).containsExactly(1L, 2L, 3L);
        assertThat(p.decodeTokens()).isEqualTo(2);
        assertThat(p.prefillTokens()).isEqualTo(2);
    }

    @Test
    void longPromptsArePrefilledInChunksUnderTheTokenBudget() {
        Scheduler s = scheduler(4, 100, 8, 8, 8);
        s.submit(1, 20, 4);
        BatchPlan p1 = s.schedule();
        assertThat(p1.chunks()).containsExactly(chunk(1, 0, 8, false, false));
        assertThat(s.blockTable(1).size()).isEqualTo(2); // blocks for exactly the positions written
        BatchPlan p2 = s.schedule();
        assertThat(p2.chunks()).containsExactly(chunk(1, 8, 8, false, false));
        BatchPlan p3 = s.schedule();
        assertThat(p3.chunks()).containsExactly(chunk(1, 16, 4, true, false));
        assertThat(s.computed(1)).isEqualTo(20);
        assertThat(s.blockTable(1).size()).isEqualTo(5);
        s.append(1);
        assertThat(s.schedule().chunks()).containsExactly(chunk(1, 20, 1, true, true));
        assertThat(s.blockTable(1).size()).isEqualTo(6);
    }

    @Test
    void decodesGoFirstAndPrefillsShareTheRestOfTheBudget() {
        Scheduler s = scheduler(4, 100, 10, 8, 8);
        s.submit(1, 30, 10); // older, long prompt
        s.submit(2, 2, 10);
        s.submit(3, 2, 10);
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 0, 10, false, false)); // budget spent on the oldest
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 10, 10, false, false));
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 20, 10, true, false));
        sampled(s, p);
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 30, 1, true, true), chunk(2, 0, 2, true, false), chunk(3, 0, 2, true, false));
        sampled(s, p);
        s.submit(4, 50, 10);
        p = s.schedule();
        // three decodes first, then 7 tokens of the new prompt
        assertThat(p.chunks()).containsExactly(chunk(1, 31, 1, true, true), chunk(2, 2, 1, true, true), chunk(3, 2, 1, true, true),
                chunk(4, 0, 7, false, false));
        sampled(s, p);
        p = s.schedule();
        // every step: the three decodes, then the rest of the budget for the long prompt
        assertThat(p.chunks()).containsExactly(chunk(1, 32, 1, true, true), chunk(2, 3, 1, true, true), chunk(3, 3, 1, true, true),
                chunk(4, 7, 7, false, false));
        sampled(s, p);
        s.submit(5, 3, 10);
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 33, 1, true, true), chunk(2, 4, 1, true, true), chunk(3, 4, 1, true, true),
                chunk(4, 14, 7, false, false));
        assertThat(s.waitingIds()).containsExactly(5L); // no budget left this step
    }

    @Test
    void theRunningBatchIsCappedAtMaxRunning() {
        Scheduler s = scheduler(4, 100, 100, 2, 8);
        for (long id = 1; id <= 4; id++) {
            s.submit(id, 2, 3);
        }
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).extracting(BatchPlan.Chunk::sequence).containsExactly(1L, 2L);
        assertThat(s.waitingIds()).containsExactly(3L, 4L);
        sampled(s, p);
        s.finish(1);
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(2, 2, 1, true, true), chunk(3, 0, 2, true, false));
    }

    @Test
    void aFullWaitingQueueRefusesNewRequests() {
        Scheduler s = scheduler(4, 100, 100, 1, 2);
        assertThat(s.submit(1, 2, 2)).isInstanceOf(Admission.Queued.class);
        assertThat(s.submit(2, 2, 2)).isInstanceOf(Admission.Queued.class);
        assertThat(s.submit(3, 2, 2)).isEqualTo(new Admission.QueueFull(2));
        assertThat(s.contains(3)).isFalse();
        s.schedule(); // 1 runs, the queue has room again
        assertThat(s.submit(3, 2, 2)).isEqualTo(new Admission.Queued(2));
    }

    @Test
    void requestsThatCanNeverFitAreTooLong() {
        // pool: 4 blocks of 4 = 16 positions; context 1000
        Scheduler s = scheduler(4, 4, 100, 8, 8);
        assertThat(s.submit(1, 10, 7)).isEqualTo(new Admission.TooLong(17, 16));
        assertThat(s.submit(2, 10, 6)).isInstanceOf(Admission.Queued.class);
        Scheduler ctx = new Scheduler(new SchedulerConfig(4, 1000, 100, 8, 8, 64));
        assertThat(ctx.submit(1, 60, 5)).isEqualTo(new Admission.TooLong(65, 64));
        assertThat(ctx.submit(2, 60, 4)).isInstanceOf(Admission.Queued.class);
        assertThat(s.blocksUsed()).isZero();
    }

    @Test
    void anExhaustedPoolPreemptsTheLatestAdmittedAndResumesItFirst() {
        // 6 blocks of 2 positions; sequences of 3-token prompts take 2 blocks each: 3 fit
        Scheduler s = scheduler(2, 6, 100, 8, 8);
        for (long id = 1; id <= 4; id++) {
            assertThat(s.submit(id, 3, 9)).isInstanceOf(Admission.Queued.class);
        }
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).extracting(BatchPlan.Chunk::sequence).containsExactly(1L, 2L, 3L);
        assertThat(s.waitingIds()).containsExactly(4L); // new requests wait while the pool is exhausted
        assertThat(s.blocksUsed()).isEqualTo(6);
        sampled(s, p);
        // positions 3 still fit in each one's second block
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 3, 1, true, true), chunk(2, 3, 1, true, true), chunk(3, 3, 1, true, true));
        assertThat(p.preempted()).isEmpty();
        sampled(s, p);
        // position 4 needs a third block each: 1 preempts 3 (the latest admitted), 2 takes the other freed block
        p = s.schedule();
        assertThat(p.preempted()).containsExactly(3L);
        assertThat(p.chunks()).containsExactly(chunk(1, 4, 1, true, true), chunk(2, 4, 1, true, true));
        assertThat(s.waitingIds()).containsExactly(3L, 4L); // back to the front, ahead of 4
        assertThat(s.computed(3)).isZero();
        assertThat(s.tokens(3)).isEqualTo(5); // prompt + the 2 tokens it generated: recomputed, not re-sampled
        assertThat(s.blockTable(3).size()).isZero();
        assertThat(s.preemptions()).isEqualTo(1);
        sampled(s, p);
        s.finish(1);
        s.finish(2);
        p = s.schedule();
        // 3 resumes first: one prefill of prompt + generated tokens that samples its next token
        assertThat(p.chunks()).containsExactly(chunk(3, 0, 5, true, false), chunk(4, 0, 3, true, false));
        assertThat(s.runningIds()).containsExactly(3L, 4L);
    }

    @Test
    void severalVictimsOfOneScheduleGoBackInAdmissionOrder() {
        // blocks of 1 position: four 1-token prompts fill the pool of 4
        Scheduler s = scheduler(1, 4, 100, 8, 8);
        for (long id = 1; id <= 4; id++) {
            s.submit(id, 1, 3);
        }
        BatchPlan p = s.schedule();
        assertThat(p.chunks()).hasSize(4);
        sampled(s, p);
        s.submit(5, 1, 1);
        // 1's decode preempts 4, then 2's decode preempts 3
        p = s.schedule();
        assertThat(p.preempted()).containsExactly(4L, 3L);
        assertThat(p.chunks()).containsExactly(chunk(1, 1, 1, true, true), chunk(2, 1, 1, true, true));
        assertThat(s.waitingIds()).containsExactly(3L, 4L, 5L);
        assertThat(s.runningIds()).containsExactly(1L, 2L);
        assertThat(s.blocksUsed()).isEqualTo(4);
    }

    @Test
    void anOlderDecodePreemptsANewerPrefill() {
        // 4 blocks of 2, budget 4 tokens a step
        Scheduler s = new Scheduler(new SchedulerConfig(2, 4, 4, 8, 8, 1000));
        s.submit(2, 1, 6);
        s.submit(3, 7, 1);
        BatchPlan p = s.schedule(); // 2's prompt, and 3 of 3's 7 prompt tokens
        assertThat(p.chunks()).containsExactly(chunk(2, 0, 1, true, false), chunk(3, 0, 3, false, false));
        s.append(2);
        p = s.schedule(); // 2 decodes inside its block; 3 takes 3 more tokens and the last free block
        assertThat(p.chunks()).containsExactly(chunk(2, 1, 1, true, true), chunk(3, 3, 3, false, false));
        assertThat(s.blocksUsed()).isEqualTo(4);
        s.append(2);
        // 2 needs a 2nd block for position 2; 3 was admitted after 2, so it is preempted
        p = s.schedule();
        assertThat(p.preempted()).containsExactly(3L);
        assertThat(p.chunks()).containsExactly(chunk(2, 2, 1, true, true));
        assertThat(s.waitingIds()).containsExactly(3L);
        assertThat(s.blocksUsed()).isEqualTo(2);
        sampled(s, p);
        p = s.schedule(); // the next schedule takes 3 back, recomputing it from its first token
        assertThat(p.chunks()).containsExactly(chunk(2, 3, 1, true, true), chunk(3, 0, 3, false, false));
    }

    @Test
    void theLatestAdmittedWaitsRatherThanPreemptingOlderSequences() {
        // 4 blocks of 2: 1 and 2 hold 2 each; 2 (the newest) needs a 3rd block: it waits, 1 goes on
        Scheduler s = scheduler(2, 4, 100, 8, 8);
        s.submit(1, 3, 2);
        s.submit(2, 4, 4);
        BatchPlan p = s.schedule();
        sampled(s, p);
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(1, 3, 1, true, true));
        assertThat(p.preempted()).isEmpty();
        assertThat(s.runningIds()).containsExactly(1L, 2L);
        s.finish(1); // its blocks come back and 2 goes on
        p = s.schedule();
        assertThat(p.chunks()).containsExactly(chunk(2, 4, 1, true, true));
    }

    @Test
    void cancelledSequencesAreRemovedAndTheirBlocksFreedAtTheNextSchedule() {
        Scheduler s = scheduler(4, 10, 100, 8, 8);
        s.submit(1, 8, 4);
        s.submit(2, 4, 4);
        BatchPlan p = s.schedule();
        sampled(s, p);
        s.submit(3, 4, 4); // still waiting when cancelled
        assertThat(s.blocksUsed()).isEqualTo(3);
        assertThat(s.cancel(1)).isTrue();
        assertThat(s.cancel(3)).isTrue();
        assertThat(s.cancel(1)).isFalse();
        assertThat(s.cancel(99)).isFalse();
        assertThat(s.blocksUsed()).isEqualTo(3); // not before the next schedule
        p = s.schedule();
        assertThat(p.cancelled()).containsExactlyInAnyOrder(1L, 3L);
        assertThat(p.chunks()).containsExactly(chunk(2, 4, 1, true, true));
        assertThat(s.blocksUsed()).isEqualTo(2);
        assertThat(s.contains(1)).isFalse();
        assertThat(s.waiting()).isZero();
        s.finish(2);
        assertThat(s.blocksUsed()).isZero();
        assertThat(s.hasWork()).isFalse();
        assertThat(s.schedule().isEmpty()).isTrue();
    }

    @Test
    void aCancelAfterTheSequenceFinishedIsIgnored() {
        Scheduler s = scheduler(4, 10, 100, 8, 8);
        s.submit(1, 2, 1);
        s.schedule();
        s.cancel(1);
        s.finish(1); // it finished in the same step
        BatchPlan p = s.schedule();
        assertThat(p.cancelled()).isEmpty();
        assertThat(s.blocksUsed()).isZero();
    }

    @Test
    void misuseIsABug() {
        Scheduler s = scheduler(4, 10, 100, 8, 8);
        s.submit(1, 2, 1);
        assertThatThrownBy(() -> s.submit(1, 2, 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> s.append(1)).isInstanceOf(IllegalStateException.class);
        s.schedule();
        assertThatThrownBy(s::schedule).isInstanceOf(IllegalStateException.class).hasMessageContaining("append or finish");
        assertThatThrownBy(() -> new SchedulerConfig(0, 1, 1, 1, 1, 1)).hasMessageContaining("blockSize");
    }

    /**
     * Random traffic against a small pool: the invariants hold after every schedule, every
     * non-empty scheduler plans some work (no deadlock), and every sequence finishes with all its
     * tokens.
     */
    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6, 7, 8})
    void randomTrafficNeverDeadlocksAndKeepsTheBooks(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int blockSize = 1 + r.nextInt(4);
        int blocks = 8 + r.nextInt(24);
        Scheduler s = new Scheduler(new SchedulerConfig(blockSize, blocks, 4 + r.nextInt(30), 1 + r.nextInt(8), 16, 1000));
        Map<Long, int[]> want = new HashMap<>(); // id -> {prompt, maxTokens, generated}
        long next = 0;
        int finished = 0;
        int preempted = 0;
        for (int step = 0; step < 200_000 && (next < 200 || s.hasWork()); step++) {
            while (next < 200 && r.nextInt(3) == 0) {
                int prompt = 1 + r.nextInt(blockSize * blocks / 2);
                int max = 1 + r.nextInt(Math.max(1, blockSize * blocks - prompt));
                Admission a = s.submit(next, prompt, max);
                if (a instanceof Admission.Queued) {
                    want.put(next, new int[] {prompt, max, 0});
                }
                next++;
            }
            if (!s.hasWork()) {
                continue;
            }
            if (r.nextInt(50) == 0 && !want.isEmpty()) {
                s.cancel(want.keySet().iterator().next());
            }
            BatchPlan p = s.schedule();
            for (long id : p.cancelled()) {
                want.remove(id);
            }
            preempted += p.preempted().size();
            assertThat(p.isEmpty() && s.hasWork()).as("work left but nothing planned: a deadlock").isFalse();
            assertThat(p.tokens()).isLessThanOrEqualTo(s.config().maxBatchTokens());
            assertThat(s.running()).isLessThanOrEqualTo(s.config().maxRunning());
            int blocksHeld = 0;
            for (long id : s.runningIds()) {
                assertThat(s.blockTable(id).size() * blockSize).isGreaterThanOrEqualTo(s.computed(id));
                blocksHeld += s.blockTable(id).size();
            }
            for (long id : s.waitingIds()) {
                assertThat(s.blockTable(id).size()).isZero();
            }
            assertThat(blocksHeld).isEqualTo(s.blocksUsed());
            List<Long> done = new ArrayList<>();
            for (BatchPlan.Chunk c : p.chunks()) {
                if (c.samples()) {
                    int[] w = want.get(c.sequence());
                    assertThat(c.start() + c.count()).isEqualTo(w[0] + w[2]);
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
                finished++;
            }
        }
        assertThat(s.hasWork()).isFalse();
        assertThat(want).isEmpty();
        assertThat(s.blocksUsed()).isZero();
        assertThat(finished).isPositive();
        assertThat(s.preemptions()).isEqualTo(preempted);
    }

    /** DESIGN.md §3.6: the scheduler package imports no tensor, model, MoE or network code. */
    @Test
    void theSchedulerIsPure() throws IOException {
        Path dir = Path.of("src/main/java/io/epserve/engine/scheduler");
        try (Stream<Path> files = Files.list(dir)) {
            for (Path f : files.toList()) {
                for (String line : Files.readAllLines(f)) {
                    if (line.startsWith("import ")) {
                        assertThat(line).as(f + " imports only java.*").startsWith("import java.");
                    }
                }
            }
        }
    }
}
