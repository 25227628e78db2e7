package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import io.epserve.moe.ExactCombine;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.WireDType;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Workers that misbehave (test-only fake services on the in-process transport): garbage and hangs
 * become WorkerExceptions naming the worker and the layer, within the deadline, and the dispatcher
 * works again as soon as the worker does.
 */
@Timeout(60)
class FaultyWorkerTest {
    static final int HIDDEN = 8;
    static final int EXPERTS = 4;
    static final Duration DEADLINE = Duration.ofMillis(500);
    /** The frontend's model: only its fingerprint matters to the fake workers. */
    static final Path MODEL = Fixtures.model("mixtral");

    enum Behaviour { OK, WRONG_BYTES, WRONG_ID, NAN, HANG, NOT_ASSIGNED_ONCE, REFUSE }

    /** Answers every Compute with partial sums = 1.0 everywhere, unless told to misbehave. */
    static final class FakeWorker extends ExpertServiceGrpc.ExpertServiceImplBase {
        volatile Behaviour behaviour = Behaviour.OK;
        /** Info never answers (a hung worker, as the monitor sees it). */
        volatile boolean infoHangs;
        final AtomicInteger assigns = new AtomicInteger();
        final AtomicInteger computes = new AtomicInteger();

        @Override
        public void assign(AssignRequest req, StreamObserver<AssignResponse> out) {
            assigns.incrementAndGet();
            if (behaviour == Behaviour.NOT_ASSIGNED_ONCE && assigns.get() > 1) {
                behaviour = Behaviour.OK;
            }
            out.onNext(AssignResponse.newBuilder().setEpoch(req.getEpoch()).build());
            out.onCompleted();
        }

        @Override
        public void info(InfoRequest req, StreamObserver<InfoResponse> out) {
            if (infoHangs) {
                return;
            }
            out.onNext(InfoResponse.newBuilder().setModelFingerprint(ModelFingerprint.of(MODEL, null).toString())
                    .setHolder(Holder.HOLDER_NONE).build());
            out.onCompleted();
        }

        @Override
        public StreamObserver<ComputeRequest> compute(StreamObserver<ComputeResponse> out) {
            return new StreamObserver<>() {
                @Override
                public void onNext(ComputeRequest r) {
                    computes.incrementAndGet();
                    int n = r.getTokens() * r.getHidden();
                    float[] ones = new float[n];
                    Arrays.fill(ones, 1f);
                    ComputeResponse.Builder b = ComputeResponse.newBuilder().setId(r.getId()).setComputeNanos(1000)
                            .setPartialSums(r.getDtype() == WireDType.WIRE_DTYPE_F32_EXACT ? exactOnes(r)
                                    : WireTensors.encode(ones, 0, n, r.getDtype()));
                    switch (behaviour) {
                        case OK -> out.onNext(b.build());
                        case WRONG_BYTES -> out.onNext(b.setPartialSums(ByteString.copyFrom(new byte[n * 4 - 4])).build());
                        case WRONG_ID -> out.onNext(b.setId(r.getId() + 1000).build());
                        case NAN -> {
                            ones[n - 1] = Float.NaN;
                            out.onNext(b.setPartialSums(WireTensors.encode(ones, 0, n, r.getDtype())).build());
                        }
                        case HANG -> { }
                        case NOT_ASSIGNED_ONCE -> out.onError(Status.FAILED_PRECONDITION
                                .withDescription("worker fake is not assigned").asRuntimeException());
                        case REFUSE -> out.onError(Status.INVALID_ARGUMENT.withDescription("expert 3 of layer 0 is not held here")
                                .asRuntimeException());
                    }
                }

                @Override
                public void onError(Throwable t) {}

                @Override
                public void onCompleted() {
                    out.onCompleted();
                }
            };
        }
    }

    /** 1.0 everywhere as exact partial sums: 2^-grid on each token's grid. */
    static ByteString exactOnes(ComputeRequest r) {
        int h = r.getHidden();
        float[] x = new float[r.getTokens() * h];
        WireTensors.decode(r.getHiddenStates(), r.getDtype(), x, x.length);
        long[] v = new long[x.length];
        for (int t = 0; t < r.getTokens(); t++) {
            long one = 1L << -ExactCombine.gridExponent(x, t * h, h);
            Arrays.fill(v, t * h, (t + 1) * h, one);
        }
        return WireTensors.encodeExact(v, v.length);
    }

    final FakeWorker fake0 = new FakeWorker();
    final FakeWorker fake1 = new FakeWorker();
    Server server0;
    Server server1;
    String name0;
    String name1;
    GrpcExpertDispatcher dispatcher;

    @BeforeEach
    void start() throws IOException {
        name0 = "fake-" + InProcessServerBuilder.generateName();
        name1 = "fake-" + InProcessServerBuilder.generateName();
        server0 = InProcessServerBuilder.forName(name0).addService(fake0).build().start();
        server1 = InProcessServerBuilder.forName(name1).addService(fake1).build().start();
        ExpertPlacement p = ExpertPlacement.create(new boolean[] {true, true}, EXPERTS, List.of(name0, name1),
                ExpertPlacement.Policy.CONTIGUOUS, 7);
        dispatcher = new GrpcExpertDispatcher(MODEL, p, GrpcExpertDispatcher.Config.defaults().withDeadline(DEADLINE),
                InProcessEquivalenceTest.IN_PROCESS).start();
    }

    @AfterEach
    void stop() {
        dispatcher.close();
        server0.shutdownNow();
        server1.shutdownNow();
    }

    @Test
    void membershipSeesAHungOrFailingWorkerSuspectAndBackUp() {
        ByteArrayOutputStream said = new ByteArrayOutputStream();
        // checked on demand (never started); never dead here: suspect is what a hung check or failed dispatch gives
        Membership.Settings settings = new Membership.Settings(Duration.ofHours(1), DEADLINE, 1000, Duration.ofHours(1));
        Membership.Placer placer = (ws, hosts, window, epoch) -> ExpertPlacement.create(window.sparseLayers(), EXPERTS, ws,
                ExpertPlacement.Policy.CONTIGUOUS, epoch);
        try (Membership m = new Membership(dispatcher, placer, settings, Map.of(), new PrintStream(said, true, StandardCharsets.UTF_8))) {
            m.checkNow();
            assertThat(m.notReadyReason()).isNull();
            assertThat(m.up()).containsEntry(name0, true).containsEntry(name1, true);
            assertThat(m.states()).containsEntry(name0, Membership.State.SERVING).containsEntry(name1, Membership.State.SERVING);

            fake1.infoHangs = true;
            long t0 = System.nanoTime();
            m.checkNow();
            assertThat((System.nanoTime() - t0) / 1_000_000).as("a check waits at most the deadline").isLessThan(DEADLINE.toMillis() + 2000);
            assertThat(m.notReadyReason()).contains("expert worker " + name1 + " is down: did not answer within 500 ms")
                    .doesNotContain(name0);
            assertThat(m.up()).containsEntry(name0, true).containsEntry(name1, false);
            assertThat(m.states()).containsEntry(name1, Membership.State.SUSPECT);
            fake1.infoHangs = false;
            m.checkNow();
            assertThat(m.notReadyReason()).isNull();

            // a failed dispatch makes its worker suspect at once (and checks it again at once: it answers Info, so it serves again)
            fake0.behaviour = Behaviour.REFUSE;
            assertThatThrownBy(() -> dispatch(0)).isInstanceOf(WorkerException.class);
            FailoverTest.await("the failed dispatch seen", () -> said.toString(StandardCharsets.UTF_8)
                    .contains("expert worker " + name0 + " is suspect: a dispatch failed"));
            assertThat(said.toString(StandardCharsets.UTF_8)).contains("expert 3 of layer 0 is not held here");
            fake0.behaviour = Behaviour.OK;
            FailoverTest.await("serving again after a good check", () -> m.states().get(name0) == Membership.State.SERVING);
            assertThat(m.notReadyReason()).isNull();
            assertThat(m.view().epoch()).as("a suspect worker is not placed out").isEqualTo(dispatcher.placement().epoch());
        }
        dispatcher.close();
        Membership.Placer none = (ws, hosts, window, epoch) -> dispatcher.placement();
        try (Membership closed = new Membership(dispatcher, none, Membership.Settings.defaults(DEADLINE), Map.of(), null)) {
            assertThat(closed.notReadyReason()).isEqualTo("the expert dispatcher is closed");
        }
    }

    /** Two tokens, each routed to expert 1 (worker 0) and expert 3 (worker 1), weights summing to 1. */
    float[] dispatch(int layer) {
        RoutingResult r = new RoutingResult(2, 2, new int[] {1, 3, 3, 1}, new float[] {0.5f, 0.5f, 0.25f, 0.75f});
        float[] out = new float[2 * HIDDEN];
        dispatcher.dispatch(layer, hidden(), HIDDEN, r, out);
        return out;
    }

    /** The two tokens' hidden states: ones (each token's exact-combine grid is then 2^-28). */
    static float[] hidden() {
        float[] x = new float[2 * HIDDEN];
        Arrays.fill(x, 1f);
        return x;
    }

    /** The same two tokens through dispatchAsync; returns the future's failure cause, or null and fills out. */
    Throwable dispatchAsync(int layer, float[] out) {
        RoutingResult r = new RoutingResult(2, 2, new int[] {1, 3, 3, 1}, new float[] {0.5f, 0.5f, 0.25f, 0.75f});
        try {
            dispatcher.dispatchAsync(layer, hidden(), HIDDEN, r, out).get(DEADLINE.toMillis() + 5000, TimeUnit.MILLISECONDS);
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (InterruptedException | TimeoutException e) {
            throw new AssertionError("dispatchAsync did not complete within the deadline", e);
        }
    }

    @Test
    void asyncDispatchCompletesWithTheCombinedSums() {
        float[] out = new float[2 * HIDDEN];
        assertThat(dispatchAsync(0, out)).isNull();
        assertThat(out).containsOnly(2f);
    }

    @Test
    void asyncDispatchFailsWithTheSameErrors() {
        float[] out = new float[2 * HIDDEN];
        fake1.behaviour = Behaviour.WRONG_BYTES;
        assertThat(dispatchAsync(1, out)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name1 + " answered garbage for layer 1");
        fake1.behaviour = Behaviour.OK;
        fake0.behaviour = Behaviour.HANG;
        long t0 = System.nanoTime();
        assertThat(dispatchAsync(0, out)).isInstanceOf(WorkerException.class)
                .hasMessage("worker " + name0 + " did not answer layer 0 within " + DEADLINE.toMillis() + " ms");
        assertThat((System.nanoTime() - t0) / 1_000_000).isBetween(DEADLINE.toMillis() - 10, DEADLINE.toMillis() + 1500);
        fake0.behaviour = Behaviour.NOT_ASSIGNED_ONCE;
        int before = fake0.assigns.get();
        assertThat(dispatchAsync(0, out)).isNull();
        assertThat(out).containsOnly(2f);
        assertThat(fake0.assigns.get()).isEqualTo(before + 1);
    }

    @Test
    void healthyFakesCombineInWorkerOrder() {
        float[] out = dispatch(1);
        assertThat(out).containsOnly(2f); // 1.0 from each worker
        assertThat(dispatcher.stats().tokens(1, 1)).isEqualTo(2);
        assertThat(dispatcher.stats().tokens(1, 3)).isEqualTo(2);
    }

    @Test
    void wrongByteCountIsGarbageNamingTheWorkerAndLayer() {
        fake1.behaviour = Behaviour.WRONG_BYTES;
        assertThatThrownBy(() -> dispatch(1)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name1 + " answered garbage for layer 1")
                .hasMessageContaining("bytes of exact partial sums, expected 64 or 128")
                .satisfies(e -> assertThat(((WorkerException) e).kind()).isEqualTo(WorkerException.Kind.GARBAGE))
                .satisfies(e -> assertThat(((WorkerException) e).request().tokens()).isEqualTo(2));
        fake1.behaviour = Behaviour.OK;
        assertThat(dispatch(1)).containsOnly(2f);
    }

    @Test
    void unknownIdIsGarbage() {
        fake0.behaviour = Behaviour.WRONG_ID;
        assertThatThrownBy(() -> dispatch(0)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name0 + " answered garbage for layer 0")
                .hasMessageContaining("not an outstanding request");
        fake0.behaviour = Behaviour.OK;
        assertThat(dispatch(0)).containsOnly(2f);
    }

    @Test
    void nonFinitePartialSumIsGarbage() {
        // exact partial sums are integers: only the float wire forms can carry a NaN
        dispatcher.close();
        ExpertPlacement p = ExpertPlacement.create(new boolean[] {true, true}, EXPERTS, List.of(name0, name1),
                ExpertPlacement.Policy.CONTIGUOUS, 8);
        dispatcher = new GrpcExpertDispatcher(MODEL, p, GrpcExpertDispatcher.Config.defaults().withDeadline(DEADLINE)
                .withWireDType(WireDType.WIRE_DTYPE_BF16), InProcessEquivalenceTest.IN_PROCESS).start();
        fake1.behaviour = Behaviour.NAN;
        assertThatThrownBy(() -> dispatch(0)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name1 + " answered garbage for layer 0: non-finite partial sum NaN");
    }

    @Test
    void hungWorkerFailsWithinTheDeadline() {
        fake0.behaviour = Behaviour.HANG;
        long t0 = System.nanoTime();
        assertThatThrownBy(() -> dispatch(1)).isInstanceOf(WorkerException.class)
                .hasMessage("worker " + name0 + " did not answer layer 1 within " + DEADLINE.toMillis() + " ms")
                .satisfies(e -> assertThat(((WorkerException) e).kind()).isEqualTo(WorkerException.Kind.DEADLINE));
        long millis = (System.nanoTime() - t0) / 1_000_000;
        assertThat(millis).isBetween(DEADLINE.toMillis() - 10, DEADLINE.toMillis() + 1500);
        fake0.behaviour = Behaviour.OK;
        assertThat(dispatch(1)).containsOnly(2f);
        assertThat(dispatcher.stats().workers().get(0).failures()).isEqualTo(1);
    }

    @Test
    void failureOfOneWorkerIsReportedWithoutWaitingForAHungOne() {
        fake0.behaviour = Behaviour.HANG;
        fake1.behaviour = Behaviour.REFUSE;
        long t0 = System.nanoTime();
        assertThatThrownBy(() -> dispatch(0)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name1 + " refused layer 0: INVALID_ARGUMENT: expert 3 of layer 0 is not held here");
        assertThat((System.nanoTime() - t0) / 1_000_000).isLessThan(DEADLINE.toMillis());
    }

    @Test
    void notAssignedWorkerIsAssignedAgainAndTheRequestResentOnce() {
        int before = fake1.assigns.get();
        fake1.behaviour = Behaviour.NOT_ASSIGNED_ONCE;
        assertThat(dispatch(1)).containsOnly(2f);
        assertThat(fake1.assigns.get()).isEqualTo(before + 1);
        assertThat(fake1.computes.get()).isEqualTo(2);
    }

    @Test
    void computeOnResendsAKeptRequestToAChosenWorker() {
        fake1.behaviour = Behaviour.WRONG_BYTES;
        WorkerException e = org.junit.jupiter.api.Assertions.assertThrows(WorkerException.class, () -> dispatch(1));
        fake1.behaviour = Behaviour.OK;
        float[] partial = dispatcher.computeOn(1, e.request());
        assertThat(partial).hasSize(2 * HIDDEN).containsOnly(1f);
    }

    @Test
    void newPlacementIsAssignedToEveryWorkerAndUsed() {
        int a0 = fake0.assigns.get();
        int a1 = fake1.assigns.get();
        ExpertPlacement swapped = ExpertPlacement.create(new boolean[] {true, true}, EXPERTS, List.of(name1, name0),
                ExpertPlacement.Policy.ROUND_ROBIN, 8);
        dispatcher.updatePlacement(swapped);
        assertThat(fake0.assigns.get()).isEqualTo(a0 + 1);
        assertThat(fake1.assigns.get()).isEqualTo(a1 + 1);
        // round-robin over (fake1, fake0): experts 1 and 3 are both on fake0 now, one partial sum of ones
        int c0 = fake0.computes.get();
        int c1 = fake1.computes.get();
        assertThat(dispatch(0)).containsOnly(1f);
        assertThat(fake0.computes.get()).isEqualTo(c0 + 1);
        assertThat(fake1.computes.get()).isEqualTo(c1);
        assertThat(dispatcher.placement().epoch()).isEqualTo(8);
        assertThatThrownBy(() -> dispatcher.updatePlacement(swapped)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("epoch 8 must exceed 8");
    }

    @Test
    void deadWorkerIsUnavailable() throws InterruptedException {
        server1.shutdownNow();
        server1.awaitTermination();
        assertThatThrownBy(() -> dispatch(0)).isInstanceOf(WorkerException.class)
                .hasMessageContaining("worker " + name1 + " failed layer 0: UNAVAILABLE")
                .satisfies(e -> assertThat(((WorkerException) e).kind()).isEqualTo(WorkerException.Kind.UNAVAILABLE));
    }
}
