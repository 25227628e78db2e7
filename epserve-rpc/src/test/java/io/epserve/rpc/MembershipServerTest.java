package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.model.LoadedModel;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The membership service over TCP with a worker's join client: the shared secret is required, a
 * worker the frontend cannot use is refused with a message naming it, an accepted one gets experts
 * at the next epoch, and the service never listens beyond loopback unauthenticated.
 */
@Timeout(120)
class MembershipServerTest {
    static final WorkerSecret SECRET = WorkerSecret.of("membership-secret-of-sufficient-length");
    final MembershipTest workers = new MembershipTest();

    @AfterEach
    void stop() {
        workers.stop();
    }

    static WorkerJoin join(HostPort service, String worker, WorkerSecurity security, ByteArrayOutputStream log) {
        return new WorkerJoin(new WorkerJoin.Settings(service, HostPort.parse(worker, "worker"), "rack-9", 2, Duration.ofMillis(200)),
                security, new PrintStream(log, true, StandardCharsets.UTF_8)).start();
    }

    @Test
    void joinsNeedTheSecretAreCheckedAndGetExpertsAtTheNextEpoch() {
        String a = MembershipTest.name();
        String b = MembershipTest.name();
        String other = MembershipTest.name();
        workers.worker(a, MembershipTest.MODEL);
        workers.worker(b, MembershipTest.MODEL);
        workers.worker(other, "qwen2_moe");
        WorkerSecurity security = new WorkerSecurity(SECRET, null);
        try (LoadedModel ref = Fixtures.load(MembershipTest.MODEL); GrpcExpertDispatcher d = workers.dispatcher(ref, List.of(a));
             Membership m = workers.membership(d);
             MembershipServer server = MembershipServer.start(new HostPort("127.0.0.1", 0), security, m)) {
            m.checkNow();
            long epoch = d.placement().epoch();
            ByteArrayOutputStream noSecret = new ByteArrayOutputStream();
            ByteArrayOutputStream wrongModel = new ByteArrayOutputStream();
            ByteArrayOutputStream good = new ByteArrayOutputStream();
            try (WorkerJoin j1 = join(server.address(), b, WorkerSecurity.NONE, noSecret);
                 WorkerJoin j2 = join(server.address(), other, security, wrongModel);
                 WorkerJoin j3 = join(server.address(), b, security, good)) {
                FailoverTest.await("refused without the secret", () -> noSecret.toString(StandardCharsets.UTF_8).contains("UNAUTHENTICATED"));
                FailoverTest.await("refused for its model", () -> wrongModel.toString(StandardCharsets.UTF_8)
                        .contains("refused the join: FAILED_PRECONDITION: worker " + other + " cannot join: serves another model"));
                FailoverTest.await("joined", j3::joined);
                FailoverTest.await("placed at the next epoch", () -> d.placement().workers().equals(List.of(a, b)));
                assertThat(d.placement().epoch()).isEqualTo(epoch + 1);
                assertThat(j1.joined()).isFalse();
                assertThat(j2.joined()).isFalse();
                assertThat(good.toString(StandardCharsets.UTF_8)).contains("joined frontend " + server.address());
                assertThat(MembershipTest.member(m, b).host()).isEqualTo("rack-9");
                assertThat(m.states()).doesNotContainKey(other);

                j3.leave();
                FailoverTest.await("placed out after leaving", () -> d.placement().workers().equals(List.of(a)));
            }
        }
    }

    @Test
    void anUnauthenticatedServiceListensOnLoopbackOnly() {
        String a = MembershipTest.name();
        workers.worker(a, MembershipTest.MODEL);
        try (LoadedModel ref = Fixtures.load(MembershipTest.MODEL); GrpcExpertDispatcher d = workers.dispatcher(ref, List.of(a));
             Membership m = workers.membership(d)) {
            assertThatThrownBy(() -> MembershipServer.start(new HostPort("0.0.0.0", 0), WorkerSecurity.NONE, m))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("without authentication");
        }
    }
}
