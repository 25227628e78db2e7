package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.model.ModelExperts;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.ComputeRequest;
import io.epserve.rpc.v1.ComputeResponse;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.LayerExperts;
import io.epserve.rpc.v1.WireDType;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.stub.StreamObserver;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The worker server over real TCP on loopback: health, Info, and the statuses of bad requests. */
@Timeout(60)
class WorkerServerTest {
    WorkerServer server;
    ManagedChannel channel;
    ExpertServiceGrpc.ExpertServiceBlockingStub stub;

    @BeforeEach
    void start() {
        server = WorkerServer.builder().host("127.0.0.1").port(0).model(WorkerModel.of(Fixtures.model("mixtral"))).experts(ModelExperts::open)
                .build();
        assertThat(server.isStarted()).isFalse(); // the builder did no I/O
        server.start();
        channel = Grpc.newChannelBuilder("127.0.0.1:" + server.port(), InsecureChannelCredentials.create()).build();
        stub = ExpertServiceGrpc.newBlockingStub(channel).withCallCredentials(new FrontendCredentials("test-frontend", null));
    }

    @AfterEach
    void stop() throws InterruptedException {
        channel.shutdownNow();
        channel.awaitTermination(5, TimeUnit.SECONDS);
        server.close();
    }

    @Test
    void healthServiceReportsServing() {
        HealthGrpc.HealthBlockingStub health = HealthGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS);
        assertThat(health.check(HealthCheckRequest.getDefaultInstance()).getStatus()).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
        assertThat(health.check(HealthCheckRequest.newBuilder().setService(WorkerServer.SERVICE_NAME).build()).getStatus())
                .isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
        assertThat(server.port()).isPositive();
        assertThat(server.name()).isEqualTo("127.0.0.1:" + server.port());
    }

    @Test
    void anUnauthenticatedWorkerListensOnLoopbackOnly() {
        WorkerModel model = WorkerModel.of(Fixtures.model("mixtral"));
        assertThatThrownBy(() -> WorkerServer.builder().host("0.0.0.0").port(0).model(model).experts(ModelExperts::open).build())
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("refusing to listen on 0.0.0.0 without authentication")
                .hasMessageContaining("--auth-secret-file");
        // with a secret it may (built only: nothing is bound here)
        assertThat(WorkerServer.builder().host("0.0.0.0").port(0).model(model).experts(ModelExperts::open)
                .security(WorkerSecurity.NONE.withSecret(WorkerSecret.of("0123456789abcdef0123"))).build().isStarted()).isFalse();
        assertThatThrownBy(() -> WorkerServer.builder().port(0).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("--model");
        assertThatThrownBy(() -> WorkerServer.builder().port(0).model(model).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("opener of its model's experts");
        assertThatThrownBy(() -> WorkerSecret.of("short")).hasMessageContaining("at least 16 characters");
        assertThat(WorkerSecret.of("0123456789abcdef0123").toString()).doesNotContain("0123");
    }

    @Test
    void infoBeforeAssign() {
        var info = stub.withDeadlineAfter(5, TimeUnit.SECONDS).info(InfoRequest.getDefaultInstance());
        assertThat(info.getAssigned()).isFalse();
        assertThat(info.getHolder()).isEqualTo(Holder.HOLDER_NONE);
        assertThat(info.getModelFingerprint()).isEqualTo(ModelFingerprint.of(Fixtures.model("mixtral"), null).toString())
                .startsWith("MixtralForCausalLM;config-sha256=").endsWith(";experts=stored");
        assertThat(info.getMappedBytes()).isZero();
        assertThat(info.getResidentBytes()).isPositive();
    }

    @Test
    void computeBeforeAssignIsFailedPrecondition() {
        assertThat(compute(request(1, 1, 0, 0).build())).satisfies(s -> {
            assertThat(s.getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
            assertThat(s.getDescription()).contains("not assigned");
        });
    }

    @Test
    void badRequestsAreRefusedWithAStatusThatSaysWhy() {
        // mixtral: hidden 128, layers 0..2 sparse, 8 experts; hold experts 0-3 of layer 1
        var a = stub.withDeadlineAfter(30, TimeUnit.SECONDS).assign(AssignRequest.newBuilder()
                .setEpoch(5).setWireDtype(WireDType.WIRE_DTYPE_F32)
                .addLayers(LayerExperts.newBuilder().setLayer(1).addExperts(0).addExperts(1).addExperts(2).addExperts(3)).build());
        assertThat(a.getExpertCount()).isEqualTo(4);
        assertThat(a.getMappedBytes()).isPositive();

        ComputeRequest ok = request(5, 1, 2, 128).build();
        assertThat(compute(ok)).isNull();

        Status epoch = compute(request(4, 1, 2, 128).build());
        assertThat(epoch.getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
        assertThat(epoch.getDescription()).contains("holds placement epoch 5, the request is for epoch 4");

        Status notHeld = compute(request(5, 1, 6, 128).build());
        assertThat(notHeld.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(notHeld.getDescription()).contains("expert 6 of layer 1 is not held here");

        Status bytes = compute(ok.toBuilder().setHiddenStates(ok.getHiddenStates().substring(4)).build());
        assertThat(bytes.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(bytes.getDescription()).contains("508 bytes of hidden states, expected 512");

        Status hidden = compute(request(5, 1, 2, 64).build());
        assertThat(hidden.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(hidden.getDescription()).contains("hidden size 64, the model's is 128");

        Status dtype = compute(ok.toBuilder().setDtype(WireDType.WIRE_DTYPE_UNSPECIFIED).build());
        assertThat(dtype.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);

        assertThatThrownBy(() -> stub.withDeadlineAfter(30, TimeUnit.SECONDS).assign(AssignRequest.newBuilder()
                .setEpoch(6).setWireDtype(WireDType.WIRE_DTYPE_F32)
                .addLayers(LayerExperts.newBuilder().setLayer(1).addExperts(8)).build()))
                .isInstanceOf(StatusRuntimeException.class).hasMessageContaining("INVALID_ARGUMENT").hasMessageContaining("expert 8 of layer 1");
        assertThatThrownBy(() -> stub.withDeadlineAfter(30, TimeUnit.SECONDS).assign(AssignRequest.newBuilder()
                .setModelFingerprint("OtherForCausalLM;config-sha256=00;experts=stored").setEpoch(6)
                .setWireDtype(WireDType.WIRE_DTYPE_F32).build()))
                .isInstanceOf(StatusRuntimeException.class).hasMessageContaining("FAILED_PRECONDITION")
                .hasMessageContaining("serves model MixtralForCausalLM").hasMessageContaining("the frontend runs OtherForCausalLM");
        assertThatThrownBy(() -> stub.withDeadlineAfter(30, TimeUnit.SECONDS).assign(AssignRequest.newBuilder()
                .setEpoch(4).setWireDtype(WireDType.WIRE_DTYPE_F32).build()))
                .isInstanceOf(StatusRuntimeException.class).hasMessageContaining("FAILED_PRECONDITION")
                .hasMessageContaining("epoch 4 is older than epoch 5");
        // a failed Assign leaves the previous share in place
        assertThat(compute(ok)).isNull();
        assertThat(stub.withDeadlineAfter(5, TimeUnit.SECONDS).info(InfoRequest.getDefaultInstance()).getCallsServed()).isEqualTo(2);
    }

    /** One token of layer {@code layer} through expert {@code expert} (weight 1) as the only request of a stream; null when answered. */
    private static ComputeRequest.Builder request(long epoch, int layer, int expert, int hidden) {
        return ComputeRequest.newBuilder().setId(1).setEpoch(epoch).setLayer(layer).setTokens(1).setHidden(hidden)
                .setDtype(WireDType.WIRE_DTYPE_F32).setHiddenStates(WireTensors.encode(new float[hidden], 0, hidden, WireDType.WIRE_DTYPE_F32))
                .addOffsets(0).addOffsets(1).addExperts(expert).addWeights(1f);
    }

    private Status compute(ComputeRequest req) {
        CompletableFuture<Status> done = new CompletableFuture<>();
        StreamObserver<ComputeRequest> requests = ExpertServiceGrpc.newStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
                .withCallCredentials(new FrontendCredentials("test-frontend", null))
                .compute(new StreamObserver<>() {
                    @Override
                    public void onNext(ComputeResponse r) {
                        if (r.getId() != req.getId() || r.getPartialSums().size() != req.getHiddenStates().size()) {
                            done.completeExceptionally(new AssertionError("bad answer " + r));
                        }
                    }

                    @Override
                    public void onError(Throwable t) {
                        done.complete(Status.fromThrowable(t));
                    }

                    @Override
                    public void onCompleted() {
                        done.complete(null);
                    }
                });
        requests.onNext(req);
        requests.onCompleted();
        return done.orTimeout(30, TimeUnit.SECONDS).join();
    }
}
