package io.epserve.engine;

import static io.epserve.engine.EngineTestSupport.TIMEOUT_S;
import static io.epserve.engine.EngineTestSupport.accepted;
import static io.epserve.engine.EngineTestSupport.alone;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.engine.EngineTestSupport.Gate;
import io.epserve.engine.EngineTestSupport.Output;
import io.epserve.engine.EngineTestSupport.Recorder;
import io.epserve.engine.EngineTestSupport.Result;
import io.epserve.engine.kv.KvBlockPool;
import io.epserve.model.Generator;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.MoeTransformer;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.RoutingResult;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The engine on the tiny demo model: batching, preemption, cancellation and failures keep outputs exact. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class EngineTest {
    static LoadedModel model;
    static ModelConfig cfg;

    @BeforeAll
    static void load() {
        model = TinyModel.load();
        cfg = model.config();
    }

    @AfterAll
    static void close() {
        model.close();
    }

    static EngineConfig config(int blockSize, int blocks, int maxBatchTokens, int maxRunning) {
        return new EngineConfig(KvBlockPool.bytesPerBlock(cfg, blockSize) * blocks, blockSize, maxBatchTokens, maxRunning, 256);
    }

    /** Varied prompts, lengths, seeds and sampling settings; some stop on a token. */
    static List<GenerationRequest> requests(int n, long seed, int minPrompt, int maxPrompt, int maxTokens, boolean ignoreEos) {
        SplittableRandom r = new SplittableRandom(seed);
        double[] temps = {0.0, 0.6, 1.0, 1.4};
        List<GenerationRequest> list = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] prompt = r.ints(minPrompt + r.nextInt(maxPrompt - minPrompt + 1), 0, cfg.vocabSize()).toArray();
            double t = temps[i % temps.length];
            SamplingParams sp = switch (i % 3) {
                case 0 -> SamplingParams.temperature(t, 1000 + i);
                case 1 -> new SamplingParams(t, 40, 0.9, 0.0, 2000 + i);
                default -> new SamplingParams(t, 0, 1.0, 0.05, 3000 + i);
            };
            Set<Integer> stop = i % 4 == 3 ? Set.of(r.nextInt(cfg.vocabSize())) : Set.of();
            list.add(new GenerationRequest("r" + i, prompt, sp, maxTokens - r.nextInt(maxTokens / 2), ignoreEos, stop));
        }
        return list;
    }

    /** Holds the engine on a gate request, submits everything from several threads, then lets the engine go. */
    static List<Output> submitTogether(Engine engine, List<GenerationRequest> requests) throws Exception {
        Gate gate = new Gate();
        accepted(engine.submit(Gate.request(), gate));
        gate.awaitEntered();
        List<Output> outs = new ArrayList<>();
        for (int i = 0; i < requests.size(); i++) {
            outs.add(new Output());
        }
        try (ExecutorService pool = Executors.newFixedThreadPool(8)) {
            List<Future<Submission>> subs = new ArrayList<>();
            for (int i = 0; i < requests.size(); i++) {
                int k = i;
                subs.add(pool.submit(() -> engine.submit(requests.get(k), outs.get(k))));
            }
            for (Future<Submission> f : subs) {
                accepted(f.get(TIMEOUT_S, TimeUnit.SECONDS));
            }
        }
        gate.release();
        assertThat(gate.await().tokens()).hasSize(2);
        return outs;
    }

    @Test
    void thirtyTwoConcurrentRequestsGiveExactlyTheirOutputsAlone() throws Exception {
        List<GenerationRequest> reqs = requests(32, 1, 2, 40, 24, false);
        try (Engine engine = Engine.start(model.transformer(), config(4, 2048, 64, 64))) {
            List<Result> alone = new ArrayList<>();
            for (GenerationRequest r : reqs) {
                alone.add(alone(engine, r));
            }
            Recorder rec = new Recorder();
            engine.addObserver(rec);
            List<Output> outs = submitTogether(engine, reqs);
            for (int i = 0; i < reqs.size(); i++) {
                Result got = outs.get(i).await();
                assertThat(got).as("request %d batched vs alone", i).isEqualTo(alone.get(i));
                assertThat(got.promptTokens()).isEqualTo(reqs.get(i).prompt().length);
            }
            System.out.println("largest step batch: " + rec.maxStepSequences.get() + " sequences, " + rec.steps.get() + " steps");
            assertThat(rec.maxStepSequences.get()).as("largest step batch").isGreaterThan(8);
            assertThat(rec.firstTokens.get()).isEqualTo(33);
            assertThat(rec.finishes.get()).isEqualTo(33);
            assertThat(rec.routings.get()).isPositive();
            assertThat(rec.prefillTokens.get()).isPositive();
            assertThat(rec.decodeTokens.get()).isPositive();
            assertThat(alone).extracting(Result::reason).contains(FinishReason.LENGTH);
            EngineStats s = engine.stats();
            assertThat(s.kvBlocksUsed()).isZero();
            assertThat(s.running()).isZero();
            assertThat(s.waiting()).isZero();
            assertThat(s.preemptions()).isZero();
        }
    }

    /**
     * Prefix caching changes no output: requests sharing a 48-token system prompt (and some
     * repeating a whole prompt) give the same tokens, sampled or greedy, with the cache as
     * without it, batched or alone, and the cache serves the shared blocks.
     */
    @Test
    void aSharedPromptPrefixIsReusedWithoutChangingAnyToken() throws Exception {
        SplittableRandom r = new SplittableRandom(11);
        int[] system = r.ints(48, 0, cfg.vocabSize()).toArray();
        List<GenerationRequest> reqs = new ArrayList<>();
        for (GenerationRequest q : requests(16, 12, 1, 12, 10, true)) {
            int[] prompt = Arrays.copyOf(system, system.length + q.prompt().length);
            System.arraycopy(q.prompt(), 0, prompt, system.length, q.prompt().length);
            reqs.add(new GenerationRequest(q.id(), prompt, q.sampling(), q.maxTokens(), q.ignoreEos(), q.stopTokenIds()));
        }
        reqs.add(reqs.getFirst());
        List<Result> uncached = new ArrayList<>();
        try (Engine engine = Engine.start(model.transformer(), config(4, 1024, 32, 16).withPrefixCaching(false))) {
            for (GenerationRequest q : reqs) {
                uncached.add(alone(engine, q));
            }
            assertThat(engine.stats().prefixQueriedTokens()).isZero();
        }
        try (Engine engine = Engine.start(model.transformer(), config(4, 1024, 32, 16))) {
            for (int i = 0; i < reqs.size(); i++) {
                assertThat(alone(engine, reqs.get(i))).as("request %d alone, cache on", i).isEqualTo(uncached.get(i));
            }
            EngineStats afterAlone = engine.stats();
            // every request after the first reuses the 12 full blocks of the system prompt at least
            assertThat(afterAlone.prefixHitTokens()).isGreaterThanOrEqualTo(16L * 48);
            List<Output> outs = submitTogether(engine, reqs);
            for (int i = 0; i < reqs.size(); i++) {
                assertThat(outs.get(i).await()).as("request %d batched, cache on", i).isEqualTo(uncached.get(i));
            }
            EngineStats s = engine.stats();
            assertThat(s.prefixHitTokens()).isGreaterThan(afterAlone.prefixHitTokens());
            assertThat(s.prefixCachedBlocks()).isPositive();
            assertThat(s.kvBlocksUsed()).isZero();
        }
    }

    @Test
    void theEngineGivesTheReferenceGeneratorsTokensWithChunkedPrefill() throws Exception {
        MoeTransformer t = model.transformer();
        // a step budget of 7 tokens prefills these prompts in several chunks
        try (Engine engine = Engine.start(t, config(4, 256, 7, 4))) {
            for (GenerationRequest r : requests(6, 2, 10, 30, 12, true)) {
                Generator.Result want = Generator.generate(t, r.prompt(), r.maxTokens(), r.sampling(), r.ignoreEos(), r.stopTokenIds(),
                        tok -> { });
                Result got = alone(engine, r);
                assertThat(got.tokens()).containsExactly(Arrays.stream(want.generated()).boxed().toArray(Integer[]::new));
                assertThat(got.reason()).isEqualTo(FinishReason.LENGTH);
            }
        }
    }

    @Test
    void anExhaustedPoolPreemptsAndResumesWithExactOutputs() throws Exception {
        // 24 blocks of 4 positions; each request needs up to 10 prompt + 30 generated = 10 blocks
        List<GenerationRequest> reqs = requests(8, 3, 10, 10, 30, true).stream()
                .map(r -> new GenerationRequest(r.id(), r.prompt(), r.sampling(), 30, true, Set.of())).toList();
        try (Engine engine = Engine.start(model.transformer(), config(4, 24, 64, 64))) {
            List<Result> alone = new ArrayList<>();
            for (GenerationRequest r : reqs) {
                alone.add(alone(engine, r));
            }
            assertThat(engine.stats().preemptions()).isZero();
            Recorder rec = new Recorder();
            engine.addObserver(rec);
            List<Output> outs = submitTogether(engine, reqs);
            for (int i = 0; i < reqs.size(); i++) {
                assertThat(outs.get(i).await()).as("request %d with preemption vs alone", i).isEqualTo(alone.get(i));
            }
            EngineStats s = engine.stats();
            assertThat(rec.preemptions.get()).as("preemptions seen").isPositive();
            assertThat(s.preemptions()).isEqualTo(rec.preemptions.get());
            assertThat(s.kvBlocksUsed()).isZero();
            assertThat(s.kvBlocksTotal()).isEqualTo(24);
            assertThat(s.kvBlockSize()).isEqualTo(4);
        }
    }

    @Test
    void cancelFreesTheBlocksByTheNextStep() throws Exception {
        try (Engine engine = Engine.start(model.transformer(), config(4, 256, 64, 8))) {
            int before = engine.stats().kvBlocksUsed();
            CountDownLatch threeTokens = new CountDownLatch(3);
            AtomicReference<EngineStats> atFinish = new AtomicReference<>();
            Output out = new Output(n -> threeTokens.countDown()) {
                @Override
                public void onFinish(FinishReason reason, int promptTokens, int generatedTokens) {
                    atFinish.set(engine.stats());
                    super.onFinish(reason, promptTokens, generatedTokens);
                }
            };
            GenerationRequest long_ = new GenerationRequest("long", new int[] {3, 4, 5, 6, 7}, SamplingParams.temperature(0.8, 5), 900,
                    true, Set.of());
            RequestHandle h = accepted(engine.submit(long_, out)).handle();
            assertThat(threeTokens.await(TIMEOUT_S, TimeUnit.SECONDS)).isTrue();
            assertThat(engine.stats().kvBlocksUsed()).isGreaterThan(before);
            h.cancel();
            // Read after cancel() returns: at least the steps completed when the cancel was queued.
            // (Read before it, a step could complete and the next one start in between on a busy
            // machine, and that in-flight step would look like one step too many.)
            long stepsAtCancel = engine.stats().steps();
            Result r = out.await();
            assertThat(r.reason()).isEqualTo(FinishReason.CANCELLED);
            assertThat(r.generatedTokens()).isLessThan(900);
            assertThat(atFinish.get().kvBlocksUsed()).as("blocks when the cancel is reported").isEqualTo(before);
            assertThat(atFinish.get().steps()).as("at most the step in flight ran after the cancel").isLessThanOrEqualTo(stepsAtCancel + 1);
            assertThat(atFinish.get().running()).isZero();
            h.cancel(); // after the end: nothing happens
            GenerationRequest short_ = new GenerationRequest("short", long_.prompt(), long_.sampling(), 3, true, Set.of());
            assertThat(alone(engine, short_).tokens()).hasSize(3);
            assertThat(engine.stats().kvBlocksUsed()).isEqualTo(before);
        }
    }

    /** serve's warm-up request is not the service's work: its counts are dropped, while idle only. */
    @Test
    void countersStartFromZeroAfterAResetAndOnlyWhileIdle() throws Exception {
        int[] prompt = new SplittableRandom(5).ints(40, 0, cfg.vocabSize()).toArray();
        GenerationRequest q = new GenerationRequest("warm-up", prompt, SamplingParams.GREEDY, 4, true, Set.of());
        try (Engine engine = Engine.start(model.transformer(), config(4, 256, 32, 4))) {
            Result first = alone(engine, q);
            EngineStats before = engine.stats();
            assertThat(before.steps()).isPositive();
            assertThat(before.prefixQueriedTokens()).isEqualTo(prompt.length);
            engine.resetCounters();
            EngineStats after = engine.stats();
            assertThat(after.steps()).isZero();
            assertThat(after.preemptions()).isZero();
            assertThat(after.prefixQueriedTokens()).isZero();
            assertThat(after.prefixHitTokens()).isZero();
            assertThat(after.prefixCachedBlocks()).as("the cache keeps its blocks").isEqualTo(before.prefixCachedBlocks()).isPositive();
            // the same request again is counted afresh, and the kept blocks serve it
            assertThat(alone(engine, q)).isEqualTo(first);
            EngineStats again = engine.stats();
            assertThat(again.prefixQueriedTokens()).isEqualTo(prompt.length);
            assertThat(again.prefixHitTokens()).isPositive();
            assertThat(again.steps()).isPositive().isLessThanOrEqualTo(before.steps());

            Gate gate = new Gate();
            accepted(engine.submit(Gate.request(), gate));
            gate.awaitEntered();
            assertThatThrownBy(engine::resetCounters).isInstanceOf(IllegalStateException.class).hasMessageContaining("idle")
                    .hasMessageContaining("1 running");
            gate.release();
            gate.await();
            assertThat(engine.stats().steps()).as("the refused reset dropped nothing").isGreaterThan(again.steps());
        }
    }

    @Test
    void aWaitingRequestCanBeCancelledAndAStopStringFinishesARunningOne() throws Exception {
        try (Engine engine = Engine.start(model.transformer(), config(4, 256, 64, 1))) {
            Gate gate = new Gate();
            accepted(engine.submit(Gate.request(), gate));
            gate.awaitEntered();
            Output waiting = new Output();
            RequestHandle w = accepted(engine.submit(new GenerationRequest("w", new int[] {9, 9}, SamplingParams.GREEDY, 50, true,
                    Set.of()), waiting)).handle();
            AtomicReference<RequestHandle> stopMe = new AtomicReference<>();
            CountDownLatch twoTokens = new CountDownLatch(2);
            Output stopped = new Output(n -> twoTokens.countDown());
            stopMe.set(accepted(engine.submit(new GenerationRequest("s", new int[] {4, 2}, SamplingParams.GREEDY, 500, true, Set.of()),
                    stopped)).handle());
            assertThat(engine.stats().waiting()).isEqualTo(2); // maxRunning 1: the gate runs, both wait
            w.cancel();
            gate.release();
            Result cancelled = waiting.await();
            assertThat(cancelled.reason()).isEqualTo(FinishReason.CANCELLED);
            assertThat(cancelled.generatedTokens()).isZero();
            assertThat(twoTokens.await(TIMEOUT_S, TimeUnit.SECONDS)).isTrue();
            stopMe.get().finish(); // the API layer matched a stop string
            Result s = stopped.await();
            assertThat(s.reason()).isEqualTo(FinishReason.STOP);
            assertThat(s.generatedTokens()).isBetween(2, 499);
            assertThat(engine.stats().kvBlocksUsed()).isZero();
        }
    }

    /** A dispatcher whose expert worker dies when told to, like a remote worker going away mid-step. */
    static final class FlakyDispatcher implements ExpertDispatcher {
        final ExpertDispatcher delegate;
        final AtomicInteger failures = new AtomicInteger();

        FlakyDispatcher(ExpertDispatcher delegate) {
            this.delegate = delegate;
        }

        @Override
        public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
            if (failures.getAndUpdate(f -> Math.max(0, f - 1)) > 0) {
                throw new IllegalStateException("expert worker w1 died (connection reset)");
            }
            delegate.dispatch(layer, hidden, hiddenSize, routing, out);
        }

        @Override
        public void close() {
            delegate.close();
        }
    }

    @Test
    void aFailedStepFailsItsRequestsAndTheEngineServesTheNext() throws Exception {
        FlakyDispatcher flaky = new FlakyDispatcher(InProcessDispatcher.single(model.weights(), cfg.sparseLayers(), cfg.numExperts()));
        MoeTransformer t = new MoeTransformer(model.weights(), flaky, MoeTransformer.RouterChoice.LEARNED);
        GenerationRequest next = new GenerationRequest("next", new int[] {11, 12, 13}, SamplingParams.temperature(0.9, 77), 10, true,
                Set.of());
        Result want;
        try (Engine healthy = Engine.start(model.transformer(), config(4, 256, 64, 8))) {
            want = alone(healthy, next);
        }
        try (Engine engine = Engine.start(t, config(4, 256, 64, 8)); flaky) {
            Recorder rec = new Recorder();
            engine.addObserver(rec);
            // the worker dies after the doomed request's 3rd token: its next step fails
            Output doomed = new Output(n -> {
                if (n == 3) {
                    flaky.failures.set(1);
                }
            });
            accepted(engine.submit(new GenerationRequest("doomed", new int[] {1, 2, 3}, SamplingParams.GREEDY, 100, true, Set.of()),
                    doomed));
            Throwable error = doomed.awaitError();
            assertThat(error).isInstanceOf(StepFailedException.class).hasMessageContaining("doomed")
                    .hasMessageContaining("expert worker w1 died");
            assertThat(error.getCause()).hasMessage("expert worker w1 died (connection reset)");
            assertThat(doomed.tokens()).hasSize(3);
            assertThat(rec.errors.get()).isEqualTo(1);
            assertThat(engine.stats().kvBlocksUsed()).isZero();
            assertThat(engine.ready()).isTrue();
            assertThat(alone(engine, next)).isEqualTo(want);
        }
    }

    @Test
    void refusalsAreValues() throws Exception {
        Engine notStarted = new Engine(model.transformer(), config(4, 64, 64, 8));
        GenerationRequest r = new GenerationRequest("x", new int[] {1, 2}, SamplingParams.GREEDY, 4, true, Set.of());
        assertThat(notStarted.ready()).isFalse();
        assertThat(notStarted.submit(r, new Output())).isInstanceOf(Submission.NotReady.class);
        notStarted.close();

        try (Engine engine = Engine.start(model.transformer(), config(4, 64, 64, 8).withMaxWaiting(0))) {
            assertThat(engine.ready()).isTrue();
            assertThat(engine.submit(r, new Output())).isEqualTo(new Submission.QueueFull(0, 1));
        }
        try (Engine engine = Engine.start(model.transformer(), config(4, 64, 64, 8))) {
            // 64 blocks of 4 = 256 positions; the model's context is 4096
            assertThat(engine.submit(new GenerationRequest("big", new int[] {1, 2}, SamplingParams.GREEDY, 255, true, Set.of()),
                    new Output())).isEqualTo(new Submission.TooLong(257, 256));
            assertThat(engine.maxSequenceTokens()).isEqualTo(256);
            assertThatThrownBy(() -> engine.submit(new GenerationRequest("bad", new int[] {1, cfg.vocabSize()}, SamplingParams.GREEDY, 4,
                    true, Set.of()), new Output())).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("vocabulary");
        }
        try (Engine engine = Engine.start(model.transformer(), config(4, 4096, 64, 8))) {
            assertThat(engine.submit(new GenerationRequest("ctx", new int[] {1, 2}, SamplingParams.GREEDY, 4095, true, Set.of()),
                    new Output())).isEqualTo(new Submission.TooLong(4097, 4096));
            assertThat(engine.maxSequenceTokens()).isEqualTo(4096);
        }
        assertThatThrownBy(() -> EngineConfig.defaults().withMaxBatchTokens(0)).hasMessageContaining("maxBatchTokens");
        assertThatThrownBy(() -> EngineConfig.defaults().withMaxBatchTokens(32)).hasMessageContaining("maxRunning (64)");
    }

    @Test
    void closeFailsPendingRequestsAndRefusesNewOnes() throws Exception {
        Engine engine = Engine.start(model.transformer(), config(4, 256, 64, 1));
        CountDownLatch first = new CountDownLatch(1);
        Output running = new Output(n -> first.countDown());
        Output waiting = new Output();
        accepted(engine.submit(new GenerationRequest("run", new int[] {1}, SamplingParams.GREEDY, 1000, true, Set.of()), running));
        accepted(engine.submit(new GenerationRequest("wait", new int[] {2}, SamplingParams.GREEDY, 1000, true, Set.of()), waiting));
        assertThat(first.await(TIMEOUT_S, TimeUnit.SECONDS)).isTrue();
        engine.close();
        assertThat(running.awaitError()).isInstanceOf(EngineClosedException.class).hasMessageContaining("closed")
                .hasMessageContaining("run");
        assertThat(waiting.awaitError()).isInstanceOf(EngineClosedException.class).hasMessageContaining("wait");
        assertThat(engine.ready()).isFalse();
        assertThat(engine.submit(new GenerationRequest("late", new int[] {1}, SamplingParams.GREEDY, 2, true, Set.of()), new Output()))
                .isInstanceOf(Submission.NotReady.class);
        engine.close(); // idempotent
    }
}
