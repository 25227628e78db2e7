package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.RoutingResult;
import io.epserve.rpc.shm.RingFile;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.AssignResponse;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
import io.grpc.Server;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Choosing the transport: {@link Transport#AUTO} uses the Compute stream, silently, with a worker
 * on another host or one that cannot serve a ring, and {@link Transport#SHM} refuses such a
 * worker at start with an error naming it; {@link Transport#GRPC} never attaches a ring; and the
 * configuration value is validated.
 */
@Timeout(60)
class SharedMemoryFallbackTest {
    /** The fake worker of FaultyWorkerTest, telling the host id it is given and serving no ring (AttachRing unimplemented). */
    static final class HostFake extends ExpertServiceGrpc.ExpertServiceImplBase {
        final FaultyWorkerTest.FakeWorker inner = new FaultyWorkerTest.FakeWorker();
        final String hostId;

        HostFake(String hostId) {
            this.hostId = hostId;
        }

        @Override
        public void assign(AssignRequest req, StreamObserver<AssignResponse> out) {
            out.onNext(AssignResponse.newBuilder().setEpoch(req.getEpoch()).setHostId(hostId).build());
            out.onCompleted();
        }

        @Override
        public void info(InfoRequest req, StreamObserver<InfoResponse> out) {
            inner.info(req, out);
        }

        @Override
        public StreamObserver<ComputeRequest> compute(StreamObserver<ComputeResponse> out) {
            return inner.compute(out);
        }
    }

    Server server;
    String name;

    String start(String hostId) throws IOException {
        name = "fake-" + InProcessServerBuilder.generateName();
        server = InProcessServerBuilder.forName(name).addService(new HostFake(hostId)).build().start();
        return name;
    }

    @AfterEach
    void stop() {
        if (server != null) {
            server.shutdownNow();
        }
    }

    GrpcExpertDispatcher dispatcher(Transport t) {
        ExpertPlacement p = ExpertPlacement.create(new boolean[] {true}, FaultyWorkerTest.EXPERTS, List.of(name),
                ExpertPlacement.Policy.CONTIGUOUS, 1);
        return new GrpcExpertDispatcher(FaultyWorkerTest.MODEL, p, GrpcExpertDispatcher.Config.defaults().withTransport(t),
                InProcessEquivalenceTest.IN_PROCESS);
    }

    static float[] dispatchOnce(GrpcExpertDispatcher d) {
        int h = FaultyWorkerTest.HIDDEN;
        float[] x = new float[h];
        Arrays.fill(x, 0.5f);
        float[] out = new float[h];
        d.dispatch(0, x, h, new RoutingResult(1, 1, new int[] {0}, new float[] {1f}), out);
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"another-host", "same-host"})
    void autoUsesTheStreamWhenNoRingCanBeAttached(String where) throws IOException {
        start(where.equals("same-host") ? RingFile.hostId() : "another-host");
        try (GrpcExpertDispatcher d = dispatcher(Transport.AUTO).start()) {
            assertThat(dispatchOnce(d)).containsOnly(1f);
            assertThat(d.ringUse().calls()).isZero();
            assertThat(d.ringUse().workersOnRing()).isZero();
            assertThat(d.stats().workers().getFirst().calls()).isEqualTo(1);
        }
    }

    @Test
    void shmRefusesAWorkerOnAnotherHostAtStartNamingIt() throws IOException {
        start("another-host");
        GrpcExpertDispatcher d = dispatcher(Transport.SHM);
        try {
            assertThatThrownBy(d::start).isInstanceOf(WorkerException.class)
                    .hasMessageContaining("worker " + name + " cannot be reached over shared memory (--transport shm)")
                    .hasMessageContaining("another host");
        } finally {
            d.close();
        }
    }

    @Test
    void shmRefusesASameHostWorkerThatServesNoRing() throws IOException {
        start(RingFile.hostId());
        GrpcExpertDispatcher d = dispatcher(Transport.SHM);
        try {
            assertThatThrownBy(d::start).isInstanceOf(WorkerException.class).hasMessageContaining("worker " + name)
                    .hasMessageContaining("UNIMPLEMENTED");
        } finally {
            d.close();
        }
    }

    @Test
    void grpcNeverAttaches() throws IOException {
        start(RingFile.hostId());
        try (GrpcExpertDispatcher d = dispatcher(Transport.GRPC).start()) {
            assertThat(dispatchOnce(d)).containsOnly(1f);
            assertThat(d.ringUse().workersOnRing()).isZero();
        }
    }

    @Test
    void theTransportValueIsValidated() {
        assertThat(Transport.parse("SHM", "--transport")).isEqualTo(Transport.SHM);
        assertThat(Transport.parse(" auto", "--transport")).isEqualTo(Transport.AUTO);
        assertThatThrownBy(() -> Transport.parse("tcp", "--transport")).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("--transport must be auto, grpc or shm, not 'tcp'");
        assertThatThrownBy(() -> GrpcExpertDispatcher.Config.defaults().withTransport(null)).isInstanceOf(NullPointerException.class);
    }
}
