package io.epserve.operator;

import static io.epserve.operator.OperatorHarness.NAMESPACE;
import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.operator.api.Autoscaling;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.api.EpServeStatus;
import io.epserve.operator.api.ExpertDtype;
import io.epserve.operator.api.ModelSource;
import io.epserve.operator.api.SecretKeyRef;
import io.epserve.operator.api.WorkerRange;
import io.epserve.operator.monitoring.ServiceMonitor;
import io.epserve.operator.status.FrontendReport;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.OwnerReference;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.DeploymentStatusBuilder;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.apps.StatefulSetStatusBuilder;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The reconciler end to end against the mock API server: what it creates, updates, heals and reports. */
class EpServeReconcilerTest {
    private static final String NAME = "mixtral";
    private static final String WORKERS = "mixtral-worker";
    private static final String FRONTENDS = "mixtral-frontend";
    private static final String IMAGE = "registry.example/epserve:0.1.0";

    private OperatorHarness h;

    @BeforeEach
    void start() {
        h = new OperatorHarness(true);
    }

    @AfterEach
    void stop() {
        h.close();
    }

    static EpServe epServe(String name, EpServeSpec spec) {
        EpServe r = new EpServe();
        r.setMetadata(new ObjectMetaBuilder().withName(name).build());
        r.setSpec(spec);
        return r;
    }

    private static EpServeSpec spec(int minWorkers, int maxWorkers, ExpertDtype dtype) {
        return new EpServeSpec(IMAGE, new ModelSource("models", null, "mixtral-8x7b"), dtype, 1,
                new WorkerRange(minWorkers, maxWorkers), null, 1, null, null, null, new SecretKeyRef("epserve-auth", null));
    }

    private static Container container(StatefulSet s) {
        return s.getSpec().getTemplate().getSpec().getContainers().getFirst();
    }

    private static Container container(Deployment d) {
        return d.getSpec().getTemplate().getSpec().getContainers().getFirst();
    }

    private static void assertOwnedBy(HasMetadata child, EpServe owner) {
        List<OwnerReference> refs = child.getMetadata().getOwnerReferences();
        assertThat(refs).as("owner references of %s", child.getMetadata().getName()).hasSize(1);
        OwnerReference ref = refs.getFirst();
        assertThat(ref.getApiVersion()).isEqualTo("epserve.io/v1alpha1");
        assertThat(ref.getKind()).isEqualTo("EpServe");
        assertThat(ref.getName()).isEqualTo(owner.getMetadata().getName());
        assertThat(ref.getUid()).isEqualTo(owner.getMetadata().getUid());
        assertThat(ref.getController()).isTrue();
        assertThat(child.getMetadata().getLabels())
                .containsEntry("app.kubernetes.io/name", "epserve")
                .containsEntry("app.kubernetes.io/instance", NAME)
                .containsEntry("app.kubernetes.io/managed-by", "epserve-operator");
    }

    private EpServeStatus awaitStatus(Predicate<EpServeStatus> until) {
        return OperatorHarness.await("status of " + NAME, () -> h.get(NAME),
                r -> r.getStatus() != null && until.test(r.getStatus())).getStatus();
    }

    private static String condition(EpServeStatus s, String type) {
        return s.conditions().stream().filter(c -> c.getType().equals(type))
                .map(c -> c.getStatus() + "/" + c.getReason()).findFirst().orElse("absent");
    }

    @Test
    void createsEveryOwnedObjectFromTheSpec() {
        EpServe created = h.create(epServe(NAME, spec(2, 4, ExpertDtype.Q4_K)));

        StatefulSet workers = h.await(StatefulSet.class, WORKERS, s -> true);
        assertOwnedBy(workers, created);
        assertThat(workers.getSpec().getReplicas()).isEqualTo(2);
        assertThat(workers.getSpec().getServiceName()).isEqualTo(WORKERS);
        assertThat(workers.getSpec().getPodManagementPolicy()).isEqualTo("Parallel");
        assertThat(workers.getSpec().getSelector().getMatchLabels()).isEqualTo(Map.of("app.kubernetes.io/name", "epserve",
                "app.kubernetes.io/instance", NAME, "app.kubernetes.io/component", "worker"));
        assertThat(workers.getSpec().getTemplate().getMetadata().getLabels())
                .containsAllEntriesOf(workers.getSpec().getSelector().getMatchLabels());
        Container worker = container(workers);
        assertThat(worker.getImage()).isEqualTo(IMAGE);
        assertThat(worker.getArgs()).containsExactly("worker", "--listen", "0.0.0.0:7070", "--model",
                "/models/mixtral-8x7b", "--expert-dtype", "q4_k", "--auth-secret-file", "/etc/epserve/auth/secret");
        assertThat(worker.getPorts()).singleElement().satisfies(p -> {
            assertThat(p.getContainerPort()).isEqualTo(7070);
            assertThat(p.getName()).isEqualTo("grpc");
        });
        assertThat(worker.getReadinessProbe().getTcpSocket().getPort().getStrVal()).isEqualTo("grpc");
        assertThat(worker.getLivenessProbe().getTcpSocket().getPort().getStrVal()).isEqualTo("grpc");
        assertThat(worker.getStartupProbe().getFailureThreshold() * worker.getStartupProbe().getPeriodSeconds())
                .isGreaterThanOrEqualTo(600);
        assertThat(worker.getEnv()).anySatisfy(e -> {
            assertThat(e.getName()).isEqualTo("EPSERVE_CACHE");
            assertThat(e.getValue()).isEqualTo("/var/cache/epserve");
        });
        var volumes = workers.getSpec().getTemplate().getSpec().getVolumes();
        assertThat(volumes).filteredOn(v -> v.getPersistentVolumeClaim() != null).singleElement().satisfies(v -> {
            assertThat(v.getPersistentVolumeClaim().getClaimName()).isEqualTo("models");
            assertThat(v.getPersistentVolumeClaim().getReadOnly()).isTrue();
        });
        assertThat(volumes).filteredOn(v -> v.getSecret() != null).singleElement()
                .satisfies(v -> assertThat(v.getSecret().getSecretName()).isEqualTo("epserve-auth"));
        assertThat(volumes).filteredOn(v -> v.getEmptyDir() != null).singleElement()
                .satisfies(v -> assertThat(v.getName()).isEqualTo("cache"));
        assertThat(worker.getVolumeMounts()).anySatisfy(m -> {
            assertThat(m.getMountPath()).isEqualTo("/models");
            assertThat(m.getReadOnly()).isTrue();
        });

        Service workerService = h.await(Service.class, WORKERS, s -> true);
        assertOwnedBy(workerService, created);
        assertThat(workerService.getSpec().getClusterIP()).isEqualTo("None");
        assertThat(workerService.getSpec().getPublishNotReadyAddresses()).isTrue();
        assertThat(workerService.getSpec().getSelector()).isEqualTo(workers.getSpec().getSelector().getMatchLabels());
        assertThat(workerService.getSpec().getPorts()).singleElement().satisfies(p -> assertThat(p.getPort()).isEqualTo(7070));

        ConfigMap config = h.await(ConfigMap.class, "mixtral-config", c -> true);
        assertOwnedBy(config, created);
        assertThat(config.getData()).containsEntry("EPSERVE_WORKERS",
                "mixtral-worker-0.mixtral-worker.serving.svc:7070,mixtral-worker-1.mixtral-worker.serving.svc:7070")
                .containsEntry("EPSERVE_REDUNDANT_EXPERTS", "1");

        Deployment frontends = h.await(Deployment.class, FRONTENDS, d -> true);
        assertOwnedBy(frontends, created);
        assertThat(frontends.getSpec().getReplicas()).isEqualTo(1);
        assertThat(frontends.getSpec().getStrategy().getType()).isEqualTo("Recreate");
        Container frontend = container(frontends);
        assertThat(frontend.getImage()).isEqualTo(IMAGE);
        assertThat(frontend.getArgs()).containsExactly("serve", "--host", "0.0.0.0", "--port", "8080", "--model",
                "/models/mixtral-8x7b", "--workers", "$(EPSERVE_WORKERS)", "--expert-dtype", "q4_k",
                "--worker-secret-file", "/etc/epserve/auth/secret");
        assertThat(frontend.getEnvFrom()).singleElement()
                .satisfies(e -> assertThat(e.getConfigMapRef().getName()).isEqualTo("mixtral-config"));
        assertThat(frontend.getPorts()).singleElement().satisfies(p -> {
            assertThat(p.getContainerPort()).isEqualTo(8080);
            assertThat(p.getName()).isEqualTo("http");
        });
        assertThat(frontend.getReadinessProbe().getHttpGet().getPath()).isEqualTo("/ready");
        assertThat(frontend.getLivenessProbe().getHttpGet().getPath()).isEqualTo("/health");
        assertThat(frontend.getReadinessProbe().getHttpGet().getPort().getStrVal()).isEqualTo("http");
        assertThat(frontends.getSpec().getTemplate().getMetadata().getAnnotations())
                .containsEntry("prometheus.io/scrape", "true").containsKey("epserve.io/config-hash");
        assertThat(frontends.getSpec().getTemplate().getMetadata().getLabels())
                .containsEntry("app.kubernetes.io/component", "frontend");

        Service api = h.await(Service.class, NAME, s -> true);
        assertOwnedBy(api, created);
        assertThat(api.getSpec().getType()).isEqualTo("ClusterIP");
        assertThat(api.getSpec().getSelector()).isEqualTo(frontends.getSpec().getSelector().getMatchLabels());
        assertThat(api.getSpec().getPorts()).singleElement().satisfies(p -> {
            assertThat(p.getPort()).isEqualTo(8080);
            assertThat(p.getTargetPort().getStrVal()).isEqualTo("http");
        });

        PodDisruptionBudget pdb = h.await(PodDisruptionBudget.class, WORKERS, p -> true);
        assertOwnedBy(pdb, created);
        assertThat(pdb.getSpec().getMaxUnavailable().getIntVal()).isEqualTo(1);
        assertThat(pdb.getSpec().getSelector().getMatchLabels()).isEqualTo(workers.getSpec().getSelector().getMatchLabels());

        ServiceMonitor monitor = h.await(ServiceMonitor.class, NAME, m -> true);
        assertOwnedBy(monitor, created);
        assertThat(monitor.getSpec().selector().getMatchLabels()).isEqualTo(api.getSpec().getSelector());
        assertThat(monitor.getSpec().endpoints()).singleElement().satisfies(e -> {
            assertThat(e.port()).isEqualTo("http");
            assertThat(e.path()).isEqualTo("/metrics");
        });

        EpServeStatus status = awaitStatus(s -> s.workersDesired() != null);
        assertThat(status.workersDesired()).isEqualTo(2);
        assertThat(status.workersReady()).isZero();
        assertThat(status.observedGeneration()).isEqualTo(created.getMetadata().getGeneration());
        assertThat(status.observedFrom()).isEqualTo("unreachable");
        assertThat(condition(status, "Ready")).isEqualTo("False/WorkersNotReady");
        assertThat(condition(status, "Progressing")).isEqualTo("True/RollingOut");
    }

    @Test
    void scalingAndChangingTheDtypeUpdateTheOwnedObjects() {
        h.create(epServe(NAME, spec(2, 4, ExpertDtype.Q4_K)));
        StatefulSet before = h.await(StatefulSet.class, WORKERS, s -> true);
        String hashBefore = h.await(Deployment.class, FRONTENDS, d -> true)
                .getSpec().getTemplate().getMetadata().getAnnotations().get("epserve.io/config-hash");

        h.editSpec(NAME, s -> new EpServeSpec(IMAGE, s.model(), ExpertDtype.Q8_0, 1, new WorkerRange(3, 4), null,
                1, null, null, null, s.authSecret()));

        StatefulSet after = h.await(StatefulSet.class, WORKERS, s -> s.getSpec().getReplicas() == 3);
        assertThat(after.getMetadata().getUid()).isEqualTo(before.getMetadata().getUid());
        assertThat(container(after).getArgs()).containsSequence("--expert-dtype", "q8_0");
        ConfigMap config = h.await(ConfigMap.class, "mixtral-config",
                c -> c.getData().get("EPSERVE_WORKERS").split(",").length == 3);
        assertThat(config.getData().get("EPSERVE_WORKERS")).endsWith("mixtral-worker-2.mixtral-worker.serving.svc:7070");
        Deployment frontends = h.await(Deployment.class, FRONTENDS,
                d -> container(d).getArgs().contains("q8_0"));
        assertThat(container(frontends).getArgs()).containsSequence("--expert-dtype", "q8_0");
        assertThat(frontends.getSpec().getTemplate().getMetadata().getAnnotations().get("epserve.io/config-hash"))
                .as("a new worker list rolls the frontends").isNotEqualTo(hashBefore);
        EpServeStatus status = awaitStatus(s -> Objects.equals(s.workersDesired(), 3));
        assertThat(status.observedGeneration()).isEqualTo(h.get(NAME).getMetadata().getGeneration());
    }

    @Test
    void deletedOwnedObjectsAreRecreated() {
        h.create(epServe(NAME, spec(2, 4, null)));
        StatefulSet workers = h.await(StatefulSet.class, WORKERS, s -> true);
        Service api = h.await(Service.class, NAME, s -> true);
        ConfigMap config = h.await(ConfigMap.class, "mixtral-config", c -> true);

        h.client.resource(workers).delete();
        h.client.resource(api).delete();
        h.client.resource(config).delete();

        StatefulSet healed = h.await(StatefulSet.class, WORKERS,
                s -> !s.getMetadata().getUid().equals(workers.getMetadata().getUid()));
        assertThat(healed.getSpec().getReplicas()).isEqualTo(2);
        assertThat(container(healed).getArgs()).isEqualTo(container(workers).getArgs());
        Service healedApi = h.await(Service.class, NAME, s -> !s.getMetadata().getUid().equals(api.getMetadata().getUid()));
        assertThat(healedApi.getSpec().getPorts().getFirst().getPort()).isEqualTo(8080);
        ConfigMap healedConfig = h.await(ConfigMap.class, "mixtral-config",
                c -> !c.getMetadata().getUid().equals(config.getMetadata().getUid()));
        assertThat(healedConfig.getData()).isEqualTo(config.getData());
    }

    @Test
    void deletingTheResourceLeavesItsObjectsToTheGarbageCollector() {
        EpServe created = h.create(epServe(NAME, spec(1, 1, null)));
        h.await(Deployment.class, FRONTENDS, d -> true);
        h.await(ServiceMonitor.class, NAME, m -> true);
        List<HasMetadata> owned = List.of(h.get(StatefulSet.class, WORKERS), h.get(Service.class, WORKERS),
                h.get(Deployment.class, FRONTENDS), h.get(Service.class, NAME), h.get(ConfigMap.class, "mixtral-config"),
                h.get(PodDisruptionBudget.class, WORKERS), h.get(ServiceMonitor.class, NAME));
        owned.forEach(o -> assertOwnedBy(o, created));

        h.client.resource(created).delete();
        OperatorHarness.await("deletion of " + NAME, () -> h.get(NAME) == null ? "gone" : null, s -> true);
        // What Kubernetes' garbage collector does with those owner references (the mock server has none).
        owned.forEach(o -> h.client.resource(o).delete());

        // Each deletion is an event the operator sees; with its primary gone, none may bring an object back. A
        // second resource reconciled afterwards shows the operator has been processing events meanwhile.
        h.create(epServe("sentinel", spec(1, 1, null)));
        h.await(StatefulSet.class, "sentinel-worker", s -> true);
        assertThat(h.get(StatefulSet.class, WORKERS)).isNull();
        assertThat(h.get(Deployment.class, FRONTENDS)).isNull();
        assertThat(h.get(ConfigMap.class, "mixtral-config")).isNull();
    }

    @Test
    void anInvalidSpecIsReportedAndNotRetriedUntilItChanges() {
        h.create(epServe(NAME, spec(5, 2, null)));
        EpServeStatus status = awaitStatus(s -> s.conditions() != null);
        assertThat(condition(status, "Ready")).isEqualTo("False/InvalidSpec");
        assertThat(status.conditions().getFirst().getMessage())
                .isEqualTo("spec.workers.min (5) is above spec.workers.max (2)");
        assertThat(h.get(StatefulSet.class, WORKERS)).isNull();
        assertThat(h.probe.asked).as("an invalid resource is not probed").isEmpty();

        // No retry loop: JOSDK's first retry would come after 2 s; nothing reconciles it again in 3 s.
        int reconciliations = h.clock.reads.get();
        String version = h.get(NAME).getMetadata().getResourceVersion();
        OperatorHarness.holds("no reconciliation and no status write", Duration.ofSeconds(3),
                () -> h.clock.reads.get() == reconciliations && h.get(NAME).getMetadata().getResourceVersion().equals(version));

        h.editSpec(NAME, s -> spec(2, 5, null));
        h.await(StatefulSet.class, WORKERS, s -> s.getSpec().getReplicas() == 2);
        assertThat(condition(awaitStatus(s -> Objects.equals(s.workersDesired(), 2)), "Ready")).isEqualTo("False/WorkersNotReady");
    }

    @Test
    void aFailureLandsInTheStatus() {
        h.probe.failure.set(new IllegalStateException("frontend probe broke"));
        h.create(epServe(NAME, spec(1, 1, null)));
        EpServeStatus status = awaitStatus(s -> s.conditions() != null);
        assertThat(condition(status, "Ready")).isEqualTo("False/ReconcileError");
        assertThat(status.conditions().getFirst().getMessage()).isEqualTo("frontend probe broke");

        h.probe.failure.set(null);
        awaitStatus(s -> condition(s, "Ready").equals("False/WorkersNotReady"));
    }

    @Test
    void statusReportsReadinessAndWhatTheFrontendsSay() {
        h.probe.report.set(new FrontendReport(FrontendReport.Source.PLACEMENT_API, OptionalLong.of(7), OptionalDouble.of(0.83),
                OptionalInt.of(2), OptionalDouble.of(1000)));
        h.create(epServe(NAME, spec(2, 2, null)));
        // Ready frontend pod (a Deployment controller and kubelet would make it); its IP is what the probe gets.
        h.client.resource(new PodBuilder().withNewMetadata().withName("mixtral-frontend-abc").withNamespace(NAMESPACE)
                .withLabels(Map.of("app.kubernetes.io/name", "epserve", "app.kubernetes.io/instance", NAME,
                        "app.kubernetes.io/component", "frontend")).endMetadata()
                .withNewStatus().withPodIP("10.1.2.3").addNewCondition().withType("Ready").withStatus("True").endCondition()
                .endStatus().build()).create();
        StatefulSet workers = h.await(StatefulSet.class, WORKERS, s -> true);
        Deployment frontends = h.await(Deployment.class, FRONTENDS, d -> true);
        workers.setStatus(new StatefulSetStatusBuilder().withReplicas(2)
                .withReadyReplicas(2).build());
        h.client.resource(workers).updateStatus();
        frontends.setStatus(new DeploymentStatusBuilder().withReplicas(1)
                .withReadyReplicas(1).build());
        h.client.resource(frontends).updateStatus();

        EpServeStatus status = awaitStatus(s -> condition(s, "Ready").equals("True/Ready"));
        assertThat(condition(status, "Progressing")).isEqualTo("False/Stable");
        assertThat(status.workersReady()).isEqualTo(2);
        assertThat(status.frontendsReady()).isEqualTo(1);
        assertThat(status.placementEpoch()).isEqualTo(7);
        assertThat(status.balancedness()).isEqualTo(0.83);
        assertThat(status.workersServing()).isEqualTo(2);
        assertThat(status.observedFrom()).isEqualTo("placement-api");
        assertThat(h.probe.asked).contains(List.of(URI.create("http://10.1.2.3:8080")));
    }

    /** A change of the workers' status, as a kubelet reporting a pod would make: an event, so a reconciliation. */
    private void nudge(int readyReplicas) {
        StatefulSet s = h.get(StatefulSet.class, WORKERS);
        s.setStatus(new StatefulSetStatusBuilder().withReplicas(s.getSpec().getReplicas()).withReadyReplicas(readyReplicas)
                .build());
        h.client.resource(s).updateStatus();
    }

    private void reportRoutedTokens(double total) {
        h.probe.report.set(new FrontendReport(FrontendReport.Source.METRICS, OptionalLong.of(1), OptionalDouble.of(0.9),
                OptionalInt.of(1), OptionalDouble.of(total)));
    }

    @Test
    void workersFollowTheRoutedTokenRateWithACooldown() {
        Instant t0 = h.clock.now.get();
        reportRoutedTokens(0);
        h.create(epServe(NAME, new EpServeSpec(IMAGE, new ModelSource(null, "/models", null), null, 1,
                new WorkerRange(1, 4), null, null, null, null, new Autoscaling(1000.0, 60), new SecretKeyRef("auth", null))));
        h.await(StatefulSet.class, WORKERS, s -> s.getSpec().getReplicas() == 1);
        awaitStatus(s -> s.loadSample() != null && s.loadSample().sampledAt().equals(t0.toString()));

        // 90 000 tokens in 30 s: 3000/s, three workers at the target of 1000 each.
        reportRoutedTokens(90_000);
        h.clock.advance(Duration.ofSeconds(30));
        nudge(1);
        h.await(StatefulSet.class, WORKERS, s -> s.getSpec().getReplicas() == 3);
        h.await(ConfigMap.class, "mixtral-config", c -> c.getData().get("EPSERVE_WORKERS").split(",").length == 3);
        // the status of the reconciliation that scaled (a later one, on the StatefulSet's own event, may be read first)
        EpServeStatus scaled = awaitStatus(s -> Objects.equals(s.workersDesired(), 3)
                && condition(s, "Progressing").equals("True/ScalingUp"));
        assertThat(scaled.lastScaleTime()).isEqualTo(t0.plusSeconds(30).toString());

        // Load stops, but 30 s later the cooldown (60 s) still holds the count.
        h.clock.advance(Duration.ofSeconds(30));
        nudge(2);
        awaitStatus(s -> s.loadSample().sampledAt().equals(t0.plusSeconds(60).toString()));
        assertThat(h.get(StatefulSet.class, WORKERS).getSpec().getReplicas()).isEqualTo(3);

        // After the cooldown: down to the minimum.
        h.clock.advance(Duration.ofSeconds(60));
        nudge(3);
        h.await(StatefulSet.class, WORKERS, s -> s.getSpec().getReplicas() == 1);
        assertThat(condition(awaitStatus(s -> Objects.equals(s.workersDesired(), 1)), "Progressing"))
                .isEqualTo("True/ScalingDown");
    }
}
