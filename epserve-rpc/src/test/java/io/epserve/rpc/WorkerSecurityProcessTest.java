package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import com.google.protobuf.Descriptors;
import com.google.protobuf.UnknownFieldSet;
import io.epserve.model.ModelConfig;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.ExpertRequest;
import io.epserve.rpc.v1.AssignRequest;
import io.epserve.rpc.v1.ExpertProto;
import io.epserve.rpc.v1.ExpertServiceGrpc;
import io.epserve.rpc.v1.Holder;
import io.epserve.rpc.v1.InfoRequest;
import io.epserve.rpc.v1.InfoResponse;
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
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import java.io.UncheckedIOException;
import io.epserve.rpc.v1.ReleaseRequest;
import io.epserve.format.Checkpoint;

/**
 * Worker security with real worker processes over real gRPC on loopback: a caller without the
 * secret is refused, the protocol has no path to send, a worker obeys one frontend at a time
 * (until it releases the worker or its lease expires), and a silent peer fails start-up within the
 * deadline, named.
 */
@Timeout(120)
class WorkerSecurityProcessTest {
    static final String MODEL_NAME = "mixtral";
    static final Path MODEL = Fixtures.model(MODEL_NAME);
    static final String SECRET = "s3cret-for-the-test-cluster-0123456789";
    static final Duration DEADLINE = Duration.ofSeconds(5);

    @TempDir
    static Path tmp;
    static Path secretFile;
    /** Worker 0: the shared secret, default lease. Worker 1: the secret and a 1 s lease. */
    static LocalWorkerProcesses workers;
    static ModelConfig cfg;

    @BeforeAll
    static void startWorkers() throws IOException {
        secretFile = tmp.resolve("worker.secret");
        Files.writeString(secretFile, SECRET + "\n");
        LocalWorkerProcesses.CommandLine base = LocalWorkerProcesses.sameJvm(ModelWorkerMain.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"),
                List.of("--model", MODEL.toString(), "--auth-secret-file", secretFile.toString()));
        LocalWorkerProcesses.CommandLine cmd = (index, listen) -> {
            List<String> c = new ArrayList<>(base.command(index, listen));
            if (index == 1) {
                c.addAll(List.of("--lease-timeout", "1"));
            }
            return c;
        };
        workers = LocalWorkerProcesses.start(2, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60));
        cfg = ModelConfig.from(Checkpoint.readJson(MODEL.resolve("config.json")));
    }

    @AfterAll
    static void stopWorkers() {
        if (workers != null) {
            workers.close();
        }
    }

    static GrpcExpertDispatcher.Config config(WorkerSecurity security) {
        return GrpcExpertDispatcher.Config.defaults().withDeadline(DEADLINE).withAssignDeadline(Duration.ofSeconds(60))
                .withSecurity(security);
    }

    static WorkerSecurity withSecret() {
        return WorkerSecurity.NONE.withSecret(WorkerSecret.of(SECRET));
    }

    /** A dispatcher (a frontend) over worker {@code w} alone, not started. */
    static GrpcExpertDispatcher frontend(int w, WorkerSecurity security) {
        ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), List.of(workers.address(w)),
                ExpertPlacement.Policy.CONTIGUOUS, 1);
        return new GrpcExpertDispatcher(MODEL, p, config(security));
    }

    static int firstSparseLayer() {
        int layer = 0;
        while (!cfg.isSparse(layer)) {
            layer++;
        }
        return layer;
    }

    /** One token through expert 0 of the first sparse layer on worker 0 of the dispatcher's placement. */
    static float[] computeOne(GrpcExpertDispatcher d) {
        int layer = firstSparseLayer();
        float[] x = new float[cfg.hidden()];
        x[0] = 1f;
        return d.computeOn(0, new ExpertRequest(layer, 1, cfg.hidden(), x, new int[] {0, 1}, new int[] {0}, new float[] {1f}));
    }

    static ManagedChannel plainChannel(String address) {
        return Grpc.newChannelBuilder(address, InsecureChannelCredentials.create()).build();
    }

    @Test
    void aCallerWithoutTheSecretIsRefusedAndTheHealthServiceStaysOpen() {
        ManagedChannel ch = plainChannel(workers.address(0));
        try {
            var noSecret = ExpertServiceGrpc.newBlockingStub(ch).withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS)
                    .withCallCredentials(new FrontendCredentials("intruder", null));
            assertThatThrownBy(() -> noSecret.info(InfoRequest.getDefaultInstance()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).contains("worker " + workers.address(0)).contains("no worker secret")
                                .doesNotContain(SECRET);
                    });
            var wrong = ExpertServiceGrpc.newBlockingStub(ch).withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS)
                    .withCallCredentials(new FrontendCredentials("intruder", WorkerSecret.of(SECRET.replace('0', '1'))));
            assertThatThrownBy(() -> wrong.assign(AssignRequest.newBuilder().setEpoch(1).build()))
                    .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAUTHENTICATED);
                        assertThat(e.getStatus().getDescription()).contains("a wrong worker secret");
                    });
            // liveness only, and unauthenticated by design
            HealthCheckResponse health = HealthGrpc.newBlockingStub(ch).withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS)
                    .check(HealthCheckRequest.getDefaultInstance());
            assertThat(health.getStatus()).isEqualTo(HealthCheckResponse.ServingStatus.SERVING);
        } finally {
            ch.shutdownNow();
        }
        // a frontend without the secret fails start-up naming the worker and why; with it, it works
        try (GrpcExpertDispatcher d = frontend(0, WorkerSecurity.NONE)) {
            assertThatThrownBy(d::start).isInstanceOfSatisfying(WorkerException.class, e -> {
                assertThat(e.worker()).isEqualTo(workers.address(0));
                assertThat(e.code()).isEqualTo(Status.Code.UNAUTHENTICATED);
                assertThat(e).hasMessageContaining("worker " + workers.address(0)).hasMessageContaining("--worker-secret-file");
            });
        }
        try (GrpcExpertDispatcher d = frontend(0, withSecret()).start()) {
            assertThat(d.info(0).getHolder()).isEqualTo(Holder.HOLDER_CALLER);
            assertThat(computeOne(d)).hasSize(cfg.hidden());
        }
    }

    @Test
    void mutualTlsAdmitsOnlyFrontendsWithACertificateOfTheClustersCa() {
        Assumptions.assumeTrue(TestCertificates.opensslAvailable(), "needs openssl to make the test CA");
        Path certs = tmp.resolve("certs");
        try {
            Files.createDirectories(certs);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        TestCertificates.ca(certs, "ca");
        TestCertificates.ca(certs, "rogue-ca");
        TlsFiles worker = TestCertificates.signed(certs, "ca", "worker", "ca");
        TlsFiles frontend = TestCertificates.signed(certs, "ca", "frontend", "ca");
        TlsFiles rogue = TestCertificates.signed(certs, "rogue-ca", "rogue", "ca");
        LocalWorkerProcesses.CommandLine cmd = LocalWorkerProcesses.sameJvm(ModelWorkerMain.class.getName(),
                List.of("-Depserve.threads=1", "-XX:+UseSerialGC", "-Xmx256m"),
                List.of("--model", MODEL.toString(), "--tls-cert", worker.cert().toString(), "--tls-key", worker.key().toString(),
                        "--tls-ca", worker.ca().toString()));
        try (LocalWorkerProcesses tlsWorker = LocalWorkerProcesses.start(1, "127.0.0.1", 0, cmd, System.err, Duration.ofSeconds(60))) {
            String address = tlsWorker.address(0);
            ExpertPlacement p = ExpertPlacement.create(cfg.sparseLayers(), cfg.numExperts(), List.of(address),
                    ExpertPlacement.Policy.CONTIGUOUS, 1);
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(MODEL, p, config(WorkerSecurity.NONE.withTls(frontend))).start()) {
                assertThat(d.info(0).getHolder()).isEqualTo(Holder.HOLDER_CALLER);
                assertThat(computeOne(d)).hasSize(cfg.hidden());
            }
            // plaintext, and a certificate of another CA: no connection, and the error names the worker
            for (WorkerSecurity wrong : List.of(WorkerSecurity.NONE, WorkerSecurity.NONE.withTls(rogue))) {
                try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(MODEL, p, config(wrong))) {
                    assertThatThrownBy(d::start).isInstanceOfSatisfying(WorkerException.class, e -> {
                        assertThat(e.worker()).isEqualTo(address);
                        assertThat(e.kind()).isEqualTo(WorkerException.Kind.UNAVAILABLE);
                    });
                }
            }
        }
    }

    @Test
    void assignHasNoPathFieldAndAnOldClientsPathIsIgnored() {
        // no field of any message of the protocol names a path, a directory or a dtype to load
        for (Descriptors.Descriptor m : ExpertProto.getDescriptor().getMessageTypes()) {
            for (Descriptors.FieldDescriptor f : m.getFields()) {
                assertThat(f.getName()).as("%s.%s", m.getName(), f.getName()).doesNotContain("dir").doesNotContain("path")
                        .isNotEqualTo("expert_dtype");
            }
        }
        assertThat(AssignRequest.getDescriptor().findFieldByNumber(1)).isNull();
        assertThat(AssignRequest.getDescriptor().findFieldByNumber(6)).isNull();

        // an old client's model_dir (field 1) and expert_dtype (field 6) arrive as unknown fields: the worker loads its own model
        UnknownFieldSet oldFields = UnknownFieldSet.newBuilder()
                .addField(1, UnknownFieldSet.Field.newBuilder().addLengthDelimited(ByteString.copyFromUtf8("/etc")).build())
                .addField(6, UnknownFieldSet.Field.newBuilder().addLengthDelimited(ByteString.copyFromUtf8("q8_0")).build()).build();
        int layer = firstSparseLayer();
        AssignRequest old = AssignRequest.newBuilder().setEpoch(3).setWireDtype(WireDType.WIRE_DTYPE_F32)
                .addLayers(LayerExperts.newBuilder().setLayer(layer).addExperts(0)).setUnknownFields(oldFields).build();
        assertThat(old.toByteString().toString(StandardCharsets.ISO_8859_1)).contains("/etc");
        ManagedChannel ch = plainChannel(workers.address(0));
        FrontendCredentials oldClient = new FrontendCredentials(FrontendCredentials.newFrontendId(), WorkerSecret.of(SECRET));
        try {
            var stub = ExpertServiceGrpc.newBlockingStub(ch).withDeadlineAfter(60, TimeUnit.SECONDS).withCallCredentials(oldClient);
            var answer = stub.assign(old);
            assertThat(answer.getExpertCount()).isEqualTo(1);
            InfoResponse info = stub.info(InfoRequest.getDefaultInstance());
            assertThat(info.getModelFingerprint()).isEqualTo(ModelFingerprint.of(MODEL, null).toString()).endsWith("experts=stored");
            assertThat(info.toString()).doesNotContain(MODEL.toString()).doesNotContain("/etc");
            assertThat(stub.release(ReleaseRequest.getDefaultInstance()).getReleased()).isTrue();
        } finally {
            ch.shutdownNow();
        }
    }

    @Test
    void aSecondFrontendCannotTakeAWorkerAnotherHoldsUntilItIsReleased() {
        try (GrpcExpertDispatcher first = frontend(0, withSecret()).start()) {
            float[] before = computeOne(first);
            try (GrpcExpertDispatcher second = frontend(0, withSecret())) {
                assertThatThrownBy(second::start).isInstanceOfSatisfying(WorkerException.class, e -> {
                    assertThat(e.worker()).isEqualTo(workers.address(0));
                    assertThat(e.kind()).isEqualTo(WorkerException.Kind.REFUSED);
                    assertThat(e).hasMessageContaining("worker " + workers.address(0) + " is held by another frontend");
                });
                // nor can it slip a Compute or an Assign in by hand: refused, and the holder is undisturbed
                ManagedChannel ch = plainChannel(workers.address(0));
                try {
                    var intruder = ExpertServiceGrpc.newBlockingStub(ch).withDeadlineAfter(DEADLINE.toMillis(), TimeUnit.MILLISECONDS)
                            .withCallCredentials(new FrontendCredentials(second.frontendId(), WorkerSecret.of(SECRET)));
                    assertThatThrownBy(() -> intruder.assign(AssignRequest.newBuilder().setEpoch(99).build()))
                            .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                                assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);
                                assertThat(e.getStatus().getDescription()).contains("held by another frontend")
                                        .doesNotContain(first.frontendId());
                            });
                    InfoResponse seen = intruder.info(InfoRequest.getDefaultInstance());
                    assertThat(seen.getHolder()).isEqualTo(Holder.HOLDER_OTHER);
                    assertThat(seen.getLayersCount()).as("the share is the holder's business").isZero();
                    assertThat(seen.getEpoch()).isZero();
                } finally {
                    ch.shutdownNow();
                }
                assertThat(computeOne(first)).containsExactly(before);
            }
        }
        // the first frontend closed and released the worker: the next one takes it at once
        try (GrpcExpertDispatcher next = frontend(0, withSecret()).start()) {
            assertThat(next.info(0).getHolder()).isEqualTo(Holder.HOLDER_CALLER);
        }
    }

    @Test
    void aSilentHolderLosesTheWorkerWhenItsLeaseExpires() {
        try (GrpcExpertDispatcher crashed = frontend(1, withSecret()).start()) {
            // the holder now sends nothing (as if it crashed); another frontend retries until the 1 s lease has expired
            GrpcExpertDispatcher taker = null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (taker == null) {
                GrpcExpertDispatcher d = frontend(1, withSecret());
                try {
                    taker = d.start();
                } catch (WorkerException e) {
                    d.close();
                    assertThat(e.code()).isEqualTo(Status.Code.PERMISSION_DENIED);
                    assertThat(System.nanoTime()).as("worker taken within 20 s of a 1 s lease").isLessThan(deadline);
                }
            }
            try (GrpcExpertDispatcher t = taker) {
                assertThat(computeOne(t)).hasSize(cfg.hidden());
                // the old holder is fenced off: refused, not served on top of the new one
                assertThatThrownBy(() -> computeOne(crashed)).isInstanceOfSatisfying(WorkerException.class, e -> {
                    assertThat(e.code()).isEqualTo(Status.Code.PERMISSION_DENIED);
                    assertThat(e).hasMessageContaining("held by another frontend");
                });
            }
        }
    }

    @Test
    void aSilentPeerFailsStartUpWithinTheDeadlineNamingIt() throws IOException {
        // accepts TCP connections and never says a word
        List<Socket> accepted = new CopyOnWriteArrayList<>();
        try (ServerSocket silent = new ServerSocket(0, 50, InetAddress.getLoopbackAddress())) {
            Thread.ofVirtual().start(() -> {
                try {
                    while (true) {
                        accepted.add(silent.accept());
                    }
                } catch (IOException closed) {
                    // the server socket closed: the test is over
                }
            });
            String address = "127.0.0.1:" + silent.getLocalPort();
            Duration deadline = Duration.ofMillis(1500);
            long t0 = System.nanoTime();
            assertThatThrownBy(() -> GrpcExpertDispatcher.connect(MODEL, cfg.moeShape(), List.of(address), ExpertPlacement.Policy.CONTIGUOUS,
                    config(WorkerSecurity.NONE).withConnectDeadline(deadline)))
                    .isInstanceOfSatisfying(WorkerException.class, e -> {
                        assertThat(e.worker()).isEqualTo(address);
                        assertThat(e.kind()).isEqualTo(WorkerException.Kind.DEADLINE);
                        assertThat(e).hasMessageContaining("worker " + address + " did not answer within 1500 ms");
                    });
            long millis = (System.nanoTime() - t0) / 1_000_000;
            assertThat(millis).as("start-up against a silent peer").isBetween(deadline.toMillis() - 50, deadline.toMillis() + 3000);
            assertThat(accepted).as("the peer did accept the connection").isNotEmpty();
        } finally {
            for (Socket s : accepted) {
                s.close();
            }
        }
    }
}
