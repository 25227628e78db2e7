package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.model.LoadedModel;
import io.epserve.model.ModelExperts;
import io.epserve.model.MoeTransformer;
import io.epserve.moe.ExpertPlacement;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.epserve.rpc.v1.WorkerState;
import io.grpc.ManagedChannel;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Membership's state machine with real worker servers on the in-process transport, checked on
 * demand (never on a timer): a worker that stops answering is suspect, then dead and placed out
 * (outputs unchanged); when it answers again it is joining, then serving at the next epoch; a
 * draining worker is placed out and released; a join is checked first and refused naming the worker.
 */
@Timeout(120)
class MembershipTest {
    static final String MODEL = "mixtral";
    /** Dead after 2 misses; a refused connection alone never kills here (the in-process transport refuses at once). */
    static final Membership.Settings SETTINGS = new Membership.Settings(Duration.ofHours(1), Duration.ofSeconds(5), 2, Duration.ofHours(1));

    final List<WorkerServer> servers = new ArrayList<>();
    final ByteArrayOutputStream said = new ByteArrayOutputStream();

    @AfterEach
    void stop() {
        servers.forEach(WorkerServer::close);
    }

    /** A worker server of {@code model} on the in-process transport at {@code name} (a host:port-shaped name). */
    WorkerServer worker(String name, String model) {
        WorkerServer s = WorkerServer.builder().serverBuilder(InProcessServerBuilder.forName(name)).name(name)
                .model(WorkerModel.of(Fixtures.model(model))).experts(ModelExperts::open).build().start();
        servers.add(s);
        return s;
    }

    static String name() {
        return "inproc-" + UUID.randomUUID() + ":1";
    }

    static Membership.Placer contiguous() {
        return (ws, hosts, window, epoch) -> ExpertPlacement.create(window.sparseLayers(), window.numExperts(), ws,
                ExpertPlacement.Policy.CONTIGUOUS, epoch);
    }

    GrpcExpertDispatcher dispatcher(LoadedModel ref, List<String> workers) {
        ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), workers,
                ExpertPlacement.Policy.CONTIGUOUS, EquivalenceChecks.EPOCHS.incrementAndGet());
        return new GrpcExpertDispatcher(Fixtures.model(MODEL), p, GrpcExpertDispatcher.Config.defaults(), InProcessEquivalenceTest.IN_PROCESS)
                .start();
    }

    Membership membership(GrpcExpertDispatcher d) {
        return new Membership(d, contiguous(), SETTINGS, Map.of(), new PrintStream(said, true, StandardCharsets.UTF_8));
    }

    static Membership.Member member(Membership m, String address) {
        return m.view().members().stream().filter(x -> x.address().equals(address)).findFirst().orElse(null);
    }

    @Test
    void aDeadWorkerIsPlacedOutAndWhenItAnswersAgainItJoinsAtTheNextEpoch() {
        String a = name();
        String b = name();
        String c = name();
        worker(a, MODEL);
        worker(b, MODEL);
        WorkerServer wc = worker(c, MODEL);
        int[] prompt = Fixtures.cases(MODEL).get(1).tokens();
        try (LoadedModel ref = Fixtures.load(MODEL); GrpcExpertDispatcher d = dispatcher(ref, List.of(a, b, c)); Membership m = membership(d)) {
            int[] want = Fixtures.greedy(ref.transformer(), prompt, 8);
            MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
            long epoch = d.placement().epoch();
            m.checkNow();
            assertThat(m.states()).containsOnly(Map.entry(a, Membership.State.SERVING), Map.entry(b, Membership.State.SERVING),
                    Map.entry(c, Membership.State.SERVING));
            assertThat(member(m, c).experts()).isPositive();
            assertThat(member(m, c).rttMillis()).isNotNegative();

            wc.close();
            m.checkNow();
            assertThat(m.states().get(c)).isEqualTo(Membership.State.SUSPECT);
            assertThat(m.notReadyReason()).contains("expert worker " + c + " is down");
            assertThat(d.placement().epoch()).as("one miss places nothing out").isEqualTo(epoch);

            m.checkNow();
            assertThat(m.states().get(c)).isEqualTo(Membership.State.DEAD);
            FailoverTest.await("placed out", () -> d.placement().epoch() == epoch + 1);
            assertThat(d.placement().workers()).containsExactly(a, b);
            assertThat(m.notReadyReason()).as("ready without the dead worker").isNull();
            assertThat(Fixtures.greedy(t, prompt, 8)).as("tokens on the two remaining workers").containsExactly(want);

            worker(c, MODEL); // restarted on its address
            m.checkNow();
            assertThat(m.states().get(c)).isEqualTo(Membership.State.JOINING);
            FailoverTest.await("placed in again", () -> d.placement().epoch() == epoch + 2);
            assertThat(d.placement().workers()).containsExactly(a, b, c);
            assertThat(m.states().get(c)).isEqualTo(Membership.State.SERVING);
            assertThat(member(m, c).experts()).isPositive();
            assertThat(member(m, c).loadMillis()).as("the load time of its Assign").isNotNegative();
            assertThat(Fixtures.greedy(t, prompt, 8)).as("tokens on three workers again").containsExactly(want);
            assertThat(member(m, c).calls()).isPositive();
            assertThat(said.toString(StandardCharsets.UTF_8)).contains("expert worker " + c + " is dead")
                    .contains("placement epoch " + (epoch + 1) + " over 2 worker(s), without " + c)
                    .contains("placement epoch " + (epoch + 2) + " over 3 worker(s), with " + c);
        }
    }

    @Test
    void aDrainingWorkerIsPlacedOutThenReleasedAndLeavesTheTable() {
        String a = name();
        String b = name();
        worker(a, MODEL);
        WorkerServer wb = worker(b, MODEL);
        try (LoadedModel ref = Fixtures.load(MODEL); GrpcExpertDispatcher d = dispatcher(ref, List.of(a, b)); Membership m = membership(d)) {
            long epoch = d.placement().epoch();
            m.checkNow();
            assertThat(wb.held()).isTrue();
            wb.drain();
            assertThat(info(b).getState()).isEqualTo(WorkerState.WORKER_STATE_DRAINING);
            m.checkNow();
            FailoverTest.await("released", () -> !wb.held());
            assertThat(d.placement().epoch()).isEqualTo(epoch + 1);
            assertThat(d.placement().workers()).containsExactly(a);
            FailoverTest.await("gone from the table", () -> !m.states().containsKey(b));
            assertThat(said.toString(StandardCharsets.UTF_8)).contains("expert worker " + b + " is draining")
                    .contains("expert worker " + b + " drained and was released");
        }
    }

    @Test
    void aJoinIsCheckedFirstThenGetsExpertsAtTheNextEpochAndALeaveUndoesIt() {
        String a = name();
        String b = name();
        String other = name();
        worker(a, MODEL);
        WorkerServer wb = worker(b, MODEL);
        worker(other, "qwen2_moe");
        try (LoadedModel ref = Fixtures.load(MODEL); GrpcExpertDispatcher d = dispatcher(ref, List.of(a)); Membership m = membership(d)) {
            long epoch = d.placement().epoch();
            m.checkNow();
            assertThatThrownBy(() -> m.join(other, "", 1)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("worker " + other + " cannot join").hasMessageContaining("serves another model");
            String nobody = name();
            assertThatThrownBy(() -> m.join(nobody, "", 1)).hasMessageContaining("worker " + nobody + " cannot join")
                    .hasMessageContaining("cannot reach it");
            assertThatThrownBy(() -> m.join("no-port", "", 1)).hasMessageContaining("join address must be HOST:PORT");
            assertThat(m.states()).containsOnlyKeys(a);

            Membership.Joined j = m.join(b, "rack-2", 4);
            assertThat(j.added()).isTrue();
            assertThat(j.epoch()).isEqualTo(epoch);
            FailoverTest.await("the joined worker placed", () -> d.placement().epoch() == epoch + 1);
            assertThat(d.placement().workers()).containsExactly(a, b);
            m.checkNow(); // the table learns the load time and mapped experts from the checks
            Membership.Member mb = member(m, b);
            assertThat(mb.state()).isEqualTo(Membership.State.SERVING);
            assertThat(mb.host()).isEqualTo("rack-2");
            assertThat(mb.capacity()).isEqualTo(4);
            assertThat(mb.joined()).isTrue();
            assertThat(mb.experts()).isPositive();
            assertThat(mb.mapped()).as("a new worker maps its experts").isEqualTo(mb.experts());
            assertThat(m.join(b, "rack-2", 4).added()).as("a repeated join is a heartbeat").isFalse();
            assertThat(m.hostLabels(List.of(a, b))).containsExactly("", "rack-2");

            assertThat(m.leave(b)).isTrue();
            FailoverTest.await("released after leaving", () -> !wb.held());
            assertThat(d.placement().workers()).containsExactly(a);
            assertThat(d.placement().epoch()).isEqualTo(epoch + 2);
            FailoverTest.await("gone from the table", () -> !m.states().containsKey(b));
            assertThat(m.leave(b)).as("a worker the table does not know").isFalse();
        }
    }

    @Test
    void theRebalancerGoesThroughMembershipAndCannotPlaceOnADeadWorker() {
        String a = name();
        String b = name();
        worker(a, MODEL);
        WorkerServer wb = worker(b, MODEL);
        try (LoadedModel ref = Fixtures.load(MODEL); GrpcExpertDispatcher d = dispatcher(ref, List.of(a, b)); Membership m = membership(d)) {
            m.checkNow();
            ExpertPlacement current = d.placement();
            wb.close();
            m.checkNow();
            m.checkNow(); // dead: a placement change is queued; one naming b again is refused
            ExpertPlacement withB = current.withEpoch(current.epoch() + 5);
            assertThatThrownBy(() -> m.updatePlacement(withB)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("worker " + b + " is dead");
            FailoverTest.await("placed out", () -> d.placement().workers().equals(List.of(a)));
        }
    }

    private static InfoResponse info(String address) {
        ManagedChannel ch = InProcessChannelBuilder.forName(address).build();
        try {
            return ExpertServiceGrpc.newBlockingStub(ch).info(InfoRequest.getDefaultInstance());
        } finally {
            ch.shutdownNow();
        }
    }
}
