package io.epserve.operator;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.operator.EpServeConfig.Check;
import io.epserve.operator.api.Autoscaling;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.api.ModelSource;
import io.epserve.operator.api.Rebalancing;
import io.epserve.operator.api.SecretKeyRef;
import io.epserve.operator.api.WorkerRange;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class EpServeConfigTest {
    private static final ModelSource PVC = new ModelSource("models", null, null);

    private static EpServe resource(String name, EpServeSpec spec) {
        EpServe r = new EpServe();
        r.setMetadata(new ObjectMetaBuilder().withName(name).withNamespace("ns").withGeneration(1L).build());
        r.setSpec(spec);
        return r;
    }

    private static final SecretKeyRef AUTH = new SecretKeyRef("auth", null);

    private static EpServeSpec spec(ModelSource model) {
        return new EpServeSpec(null, model, null, null, null, null, null, null, null, null, AUTH);
    }

    private static List<String> problems(EpServeSpec spec) {
        return switch (EpServeConfig.check(resource("m", spec))) {
            case Check.Invalid invalid -> invalid.problems();
            case Check.Valid valid -> List.of();
        };
    }

    @Test
    void fillsEveryDefault() {
        Check check = EpServeConfig.check(resource("m", spec(PVC)));
        assertThat(check).isInstanceOf(Check.Valid.class);
        EpServeConfig c = ((Check.Valid) check).config();
        assertThat(c.image()).isEqualTo("ghcr.io/epserve/epserve:0.1.0");
        assertThat(c.model()).isEqualTo(new EpServeConfig.Model.Claim("models", ""));
        assertThat(c.expertDtype()).isEmpty();
        assertThat(c.frontends()).isEqualTo(1);
        assertThat(c.minWorkers()).isEqualTo(1);
        assertThat(c.maxWorkers()).isEqualTo(1);
        assertThat(c.redundantExperts()).isZero();
        assertThat(c.rebalancing()).isEqualTo(new EpServeConfig.RebalancePolicy(true, Duration.ofMinutes(5), 0.8));
        assertThat(c.scaling().targetTokensPerWorkerSecond()).isEmpty();
        assertThat(c.scaling().cooldown()).isEqualTo(Duration.ofMinutes(5));
        assertThat(c.authSecret()).contains(new EpServeConfig.AuthSecret("auth", "secret"));
        assertThat(Pods.modelDir(c)).isEqualTo("/models");
    }

    @Test
    void maxDefaultsToMin() {
        EpServeSpec s = new EpServeSpec(null, PVC, null, null, new WorkerRange(3, null), "8GiB", null, null, null, null, AUTH);
        EpServeConfig c = ((Check.Valid) EpServeConfig.check(resource("m", s))).config();
        assertThat(c.minWorkers()).isEqualTo(3);
        assertThat(c.maxWorkers()).isEqualTo(3);
        assertThat(Commands.frontend(c)).containsSequence("--kv-memory", "8GiB");
    }

    @Test
    void hostPathModelsAndSecretsResolve() {
        EpServeSpec s = new EpServeSpec("img:1", new ModelSource(null, "/data/models", "olmoe"), null, null, null, null, null,
                null, null, null, new SecretKeyRef("auth", "token"));
        EpServeConfig c = ((Check.Valid) EpServeConfig.check(resource("m", s))).config();
        assertThat(c.model()).isEqualTo(new EpServeConfig.Model.HostPath("/data/models", "olmoe"));
        assertThat(c.authSecret()).contains(new EpServeConfig.AuthSecret("auth", "token"));
        assertThat(Commands.worker(c)).containsExactly("worker", "--listen", "0.0.0.0:7070", "--model", "/models/olmoe",
                "--auth-secret-file", "/etc/epserve/auth/token");
    }

    @Test
    void namesEveryProblemAtOnce() {
        EpServeSpec s = new EpServeSpec(" ", new ModelSource("Bad_Claim", null, "../up"), null, 2, new WorkerRange(0, 5), "8 parsecs", -1,
                new Rebalancing(null, 5, 1.5), null, new Autoscaling(-3.0, -1), new SecretKeyRef(null, "a/b"));
        assertThat(problems(s)).containsExactlyInAnyOrder(
                "spec.image is empty",
                "spec.model.path must be relative to the volume root and must not contain '..', got '../up'",
                "spec.model.persistentVolumeClaim is not a valid claim name: 'Bad_Claim'",
                "spec.frontends must be 1, got 2: a worker serves one frontend at a time, so more frontends would need a "
                        + "worker pool each",
                "spec.kvMemory is not a size such as 512MiB or 8GiB: '8 parsecs'",
                "spec.workers.min must be at least 1, got 0",
                "spec.redundantExperts must be at least 0, got -1",
                "spec.rebalancing.intervalSeconds must be at least 10, got 5",
                "spec.rebalancing.minBalancedness must be in (0, 1], got 1.5",
                "spec.autoscaling.targetTokensPerWorkerSecond must be a positive number, got -3.0",
                "spec.autoscaling.cooldownSeconds must be at least 0, got -1",
                "spec.authSecret.name is not a valid secret name: 'null'",
                "spec.authSecret.key is not a valid secret key: 'a/b'");
    }

    @Test
    void modelNeedsExactlyOneSource() {
        assertThat(problems(spec(null))).containsExactly(
                "spec.model is missing: set spec.model.persistentVolumeClaim or spec.model.hostPath");
        assertThat(problems(spec(new ModelSource("a", "/b", null))))
                .containsExactly("spec.model needs exactly one of persistentVolumeClaim and hostPath");
        assertThat(problems(spec(new ModelSource(null, null, null))))
                .containsExactly("spec.model needs exactly one of persistentVolumeClaim and hostPath");
        assertThat(problems(spec(new ModelSource(null, "relative", null))))
                .containsExactly("spec.model.hostPath must be absolute, got 'relative'");
    }

    @Test
    void rejectsAMissingSpecAndALongName() {
        EpServe noSpec = resource("m", null);
        assertThat(EpServeConfig.check(noSpec)).isEqualTo(new Check.Invalid(List.of("spec is missing")));
        String longName = "n".repeat(EpServeConfig.MAX_NAME_LENGTH + 1);
        assertThat(EpServeConfig.check(resource(longName, spec(PVC))))
                .isEqualTo(new Check.Invalid(List.of("metadata.name must be at most 45 characters (pod names derive from it), got 46")));
        assertThat(EpServeConfig.check(resource("n".repeat(EpServeConfig.MAX_NAME_LENGTH), spec(PVC))))
                .isInstanceOf(Check.Valid.class);
    }

    @Test
    void workersNeedACredentialAndThereIsNoSecondFrontend() {
        EpServeSpec noAuth = new EpServeSpec(null, PVC, null, 0, null, null, null, null, null, null, null);
        assertThat(problems(noAuth)).containsExactly("spec.frontends must be at least 1, got 0",
                "spec.authSecret is missing: workers accept connections from other pods only with a credential "
                        + "(create one with: kubectl create secret generic NAME --from-literal=secret=...)");
    }

    @Test
    void frontendCommandOmitsUnsetOptions() {
        EpServeConfig c = ((Check.Valid) EpServeConfig.check(resource("m", spec(PVC)))).config();
        assertThat(Commands.frontend(c)).containsExactly("serve", "--host", "0.0.0.0", "--port", "8080", "--model", "/models",
                "--workers", "$(EPSERVE_WORKERS)", "--worker-secret-file", "/etc/epserve/auth/secret");
        assertThat(Optional.of(Names.workerAddresses(c, 2)))
                .contains(List.of("m-worker-0.m-worker.ns.svc:7070", "m-worker-1.m-worker.ns.svc:7070"));
    }
}
