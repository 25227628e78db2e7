package io.epserve.engine;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.sampling.SamplingParams;
import io.epserve.moe.RoutingResult;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntConsumer;

/** Listeners and observers for engine tests: every wait is bounded. */
final class EngineTestSupport {
    private EngineTestSupport() {}

    static final long TIMEOUT_S = 60;

    /** What a request produced. */
    record Result(List<Integer> tokens, FinishReason reason, int promptTokens, int generatedTokens) {}

    /** Collects a request's output; {@code onEachToken} runs on the engine thread after a token is recorded. */
    static class Output implements TokenListener {
        private final List<Integer> tokens = new ArrayList<>();
        private final CompletableFuture<Result> done = new CompletableFuture<>();
        private final IntConsumer onEachToken;
        private final AtomicInteger callbacksAfterEnd = new AtomicInteger();

        Output() {
            this(t -> { });
        }

        Output(IntConsumer onEachToken) {
            this.onEachToken = onEachToken;
        }

        @Override
        public void onToken(int token) {
            if (done.isDone()) {
                callbacksAfterEnd.incrementAndGet();
            }
            int n;
            synchronized (tokens) {
                tokens.add(token);
                n = tokens.size();
            }
            onEachToken.accept(n);
        }

        @Override
        public void onFinish(FinishReason reason, int promptTokens, int generatedTokens) {
            if (done.isDone()) {
                callbacksAfterEnd.incrementAndGet();
            }
            done.complete(new Result(tokens(), reason, promptTokens, generatedTokens));
        }

        @Override
        public void onError(RuntimeException error) {
            if (done.isDone()) {
                callbacksAfterEnd.incrementAndGet();
            }
            done.completeExceptionally(error);
        }

        List<Integer> tokens() {
            synchronized (tokens) {
                return List.copyOf(tokens);
            }
        }

        Result await() throws InterruptedException, ExecutionException, TimeoutException {
            Result r = done.get(TIMEOUT_S, TimeUnit.SECONDS);
            assertThat(r.generatedTokens()).isEqualTo(r.tokens().size());
            assertThat(callbacksAfterEnd.get()).as("callbacks after onFinish/onError").isZero();
            return r;
        }

        /** The error the request failed with. */
        Throwable awaitError() throws InterruptedException, TimeoutException {
            try {
                done.get(TIMEOUT_S, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                return e.getCause();
            }
            throw new AssertionError("the request succeeded: " + done.join());
        }
    }

    /**
     * A listener that holds the engine thread in its first onToken until {@link #release()}: while
     * it waits, everything submitted queues up and joins the next step together.
     */
    static final class Gate extends Output {
        private final CountDownLatch entered = new CountDownLatch(1);
        private final CountDownLatch released = new CountDownLatch(1);

        @Override
        public void onToken(int token) {
            super.onToken(token);
            entered.countDown();
            try {
                if (!released.await(TIMEOUT_S, TimeUnit.SECONDS)) {
                    throw new IllegalStateException("the gate was never released");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        void awaitEntered() throws InterruptedException {
            assertThat(entered.await(TIMEOUT_S, TimeUnit.SECONDS)).as("the gate request produced a token").isTrue();
        }

        void release() {
            released.countDown();
        }

        static GenerationRequest request() {
            return new GenerationRequest("gate", new int[] {1}, SamplingParams.GREEDY, 2, true, Set.of());
        }
    }

    /** Records what the engine reports. */
    static final class Recorder implements EngineObserver {
        final AtomicInteger maxStepSequences = new AtomicInteger();
        final AtomicLong steps = new AtomicLong();
        final AtomicLong decodeTokens = new AtomicLong();
        final AtomicLong prefillTokens = new AtomicLong();
        final AtomicInteger preemptions = new AtomicInteger();
        final AtomicInteger firstTokens = new AtomicInteger();
        final AtomicInteger finishes = new AtomicInteger();
        final AtomicInteger errors = new AtomicInteger();
        final AtomicLong routings = new AtomicLong();

        @Override
        public void onStep(int sequences, int prefill, int decode, long nanos) {
            steps.incrementAndGet();
            maxStepSequences.accumulateAndGet(sequences, Math::max);
            prefillTokens.addAndGet(prefill);
            decodeTokens.addAndGet(decode);
        }

        @Override
        public void onRouting(int layer, RoutingResult routing) {
            routings.incrementAndGet();
        }

        @Override
        public void onFirstToken(String requestId, long nanos) {
            firstTokens.incrementAndGet();
        }

        @Override
        public void onFinish(String requestId, FinishReason reason, int promptTokens, int generatedTokens, long nanos) {
            finishes.incrementAndGet();
        }

        @Override
        public void onError(String requestId, RuntimeException error) {
            errors.incrementAndGet();
        }

        @Override
        public void onPreempt(String requestId) {
            preemptions.incrementAndGet();
        }
    }

    static Submission.Accepted accepted(Submission s) {
        assertThat(s).isInstanceOf(Submission.Accepted.class);
        return (Submission.Accepted) s;
    }

    /** Sends one request and waits for its output: the request "alone". */
    static Result alone(Engine engine, GenerationRequest request) throws Exception {
        Output out = new Output();
        accepted(engine.submit(request, out));
        return out.await();
    }
}
