package io.epserve.operator;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.epserve.operator.api.EpServe;
import io.epserve.operator.monitoring.ServiceMonitor;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.fabric8.kubernetes.api.model.rbac.ClusterRole;
import io.fabric8.kubernetes.api.model.rbac.ClusterRoleBinding;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/** The manifests in deploy/: the CRD copy is the generated one, the base renders, RBAC covers what the code does. */
class DeployManifestsTest {
    private static final Path ROOT = Path.of(System.getProperty("epserve.root", ".."));
    private static final Path DEPLOY = ROOT.resolve("deploy");
    private static final String CRD_FILE = "epserves.epserve.io-v1.yml";

    @Test
    void crdInDeployIsTheGeneratedOne() throws IOException {
        Path generated = Path.of("target/classes/META-INF/fabric8", CRD_FILE);
        Path copy = DEPLOY.resolve("crd").resolve(CRD_FILE);
        assertThat(Files.readString(copy))
                .as("deploy/crd/%s differs from the CRD generated from the Java types; after changing them run:%n"
                        + "  cp epserve-operator/target/classes/META-INF/fabric8/%s deploy/crd/", CRD_FILE, CRD_FILE)
                .isEqualTo(Files.readString(generated));
    }

    @Test
    void generatedCrdIsNamespacedWithStatusAndColumns() {
        CustomResourceDefinition crd = OperatorHarness.generatedCrd();
        assertThat(crd.getSpec().getScope()).isEqualTo("Namespaced");
        var version = crd.getSpec().getVersions().getFirst();
        assertThat(version.getName()).isEqualTo("v1alpha1");
        assertThat(version.getSubresources().getStatus()).isNotNull();
        assertThat(version.getSchema().getOpenAPIV3Schema().getProperties().get("spec").getRequired())
                .containsExactlyInAnyOrder("model", "authSecret");
        assertThat(version.getAdditionalPrinterColumns()).extracting(c -> c.getName() + "=" + c.getJsonPath())
                .containsExactly("Ready=.status.conditions[?(@.type==\"Ready\")].status", "Epoch=.status.placementEpoch",
                        "Desired=.status.workersDesired", "Workers=.status.workersReady");
    }

    @Test
    void exampleIsAValidEpServe() throws IOException {
        EpServe example = Serialization.unmarshal(Files.readString(DEPLOY.resolve("examples/mixtral.yaml")), EpServe.class);
        example.getMetadata().setNamespace("default");
        assertThat(EpServeConfig.check(example)).isInstanceOf(EpServeConfig.Check.Valid.class);
    }

    @Test
    void kustomizeRendersTheOperator() throws IOException, InterruptedException {
        Path kubectl = onPath("kubectl");
        assumeTrue(kubectl != null, "kubectl is not on PATH: `kubectl kustomize deploy/` is not checked here");
        Process p = new ProcessBuilder(kubectl.toString(), "kustomize", DEPLOY.toString())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertThat(p.waitFor(60, TimeUnit.SECONDS)).as("kubectl kustomize finished").isTrue();
        assertThat(p.exitValue()).as("kubectl kustomize exit status").isZero();

        List<HasMetadata> objects = new ArrayList<>();
        for (String doc : out.split("(?m)^---$")) {
            if (!doc.isBlank()) {
                objects.add(Serialization.unmarshal(doc, HasMetadata.class));
            }
        }
        assertThat(objects).extracting(HasMetadata::getKind).containsExactlyInAnyOrder("Namespace",
                "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment");
        objects.forEach(o -> assertThat(o.getMetadata().getLabels()).containsEntry("app.kubernetes.io/part-of", "epserve"));

        CustomResourceDefinition crd = one(objects, CustomResourceDefinition.class);
        CustomResourceDefinition generated = OperatorHarness.generatedCrd();
        assertThat(crd.getSpec()).isEqualTo(generated.getSpec());

        Namespace ns = one(objects, Namespace.class);
        ServiceAccount sa = one(objects, ServiceAccount.class);
        assertThat(sa.getMetadata().getNamespace()).isEqualTo(ns.getMetadata().getName());

        Deployment operator = one(objects, Deployment.class);
        assertThat(operator.getMetadata().getNamespace()).isEqualTo(ns.getMetadata().getName());
        assertThat(operator.getSpec().getReplicas()).isEqualTo(1);
        assertThat(operator.getSpec().getStrategy().getType()).isEqualTo("Recreate");
        var pod = operator.getSpec().getTemplate().getSpec();
        assertThat(pod.getServiceAccountName()).isEqualTo(sa.getMetadata().getName());
        assertThat(pod.getSecurityContext().getRunAsNonRoot()).isTrue();
        var container = pod.getContainers().getFirst();
        assertThat(container.getImage()).isEqualTo(EpServeConfig.DEFAULT_IMAGE);
        assertThat(container.getArgs()).containsExactly("operator");
        assertThat(container.getPorts()).singleElement().satisfies(port -> {
            assertThat(port.getContainerPort()).isEqualTo(OperatorHealth.PORT);
            assertThat(container.getLivenessProbe().getHttpGet().getPort().getStrVal()).isEqualTo(port.getName());
        });
        assertThat(container.getLivenessProbe().getHttpGet().getPath()).isEqualTo("/healthz");
        assertThat(container.getStartupProbe().getHttpGet().getPath()).isEqualTo("/healthz");
        assertThat(container.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
        assertThat(container.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();

        ClusterRoleBinding binding = one(objects, ClusterRoleBinding.class);
        ClusterRole role = one(objects, ClusterRole.class);
        assertThat(binding.getRoleRef().getName()).isEqualTo(role.getMetadata().getName());
        assertThat(binding.getSubjects()).singleElement().satisfies(s -> {
            assertThat(s.getKind()).isEqualTo("ServiceAccount");
            assertThat(s.getName()).isEqualTo(sa.getMetadata().getName());
            assertThat(s.getNamespace()).isEqualTo(ns.getMetadata().getName());
        });
        assertLeastPrivilege(role.getRules());
    }

    /** Exactly the verbs the operator uses on each resource it touches; no wildcards, no delete, no secrets. */
    private static void assertLeastPrivilege(List<PolicyRule> rules) {
        for (PolicyRule r : rules) {
            assertThat(r.getVerbs()).doesNotContain("*", "delete", "deletecollection");
            assertThat(r.getResources()).doesNotContain("*", "secrets");
            assertThat(r.getApiGroups()).doesNotContain("*");
        }
        Set<String> owned = Set.of("get", "list", "watch", "create", "update", "patch");
        for (Class<? extends HasMetadata> type : List.of(StatefulSet.class, Deployment.class, Service.class, ConfigMap.class,
                PodDisruptionBudget.class, ServiceMonitor.class)) {
            assertThat(verbs(rules, HasMetadata.getGroup(type), HasMetadata.getPlural(type)))
                    .as("verbs on %s", type.getSimpleName()).isEqualTo(owned);
        }
        assertThat(verbs(rules, "epserve.io", "epserves")).isEqualTo(Set.of("get", "list", "watch"));
        assertThat(verbs(rules, "epserve.io", "epserves/status")).isEqualTo(Set.of("get", "patch", "update"));
        assertThat(verbs(rules, "", HasMetadata.getPlural(Pod.class))).isEqualTo(Set.of("list"));
        assertThat(rules).filteredOn(r -> r.getResources().contains("customresourcedefinitions")).singleElement()
                .satisfies(r -> {
                    assertThat(r.getResourceNames()).containsExactly(HasMetadata.getFullResourceName(ServiceMonitor.class));
                    assertThat(r.getVerbs()).containsExactly("get");
                });
    }

    private static Set<String> verbs(List<PolicyRule> rules, String group, String resource) {
        return rules.stream().filter(r -> r.getApiGroups().contains(group) && r.getResources().contains(resource))
                .flatMap(r -> r.getVerbs().stream()).collect(Collectors.toSet());
    }

    private static <T extends HasMetadata> T one(List<HasMetadata> objects, Class<T> type) {
        List<T> found = objects.stream().filter(type::isInstance).map(type::cast).toList();
        assertThat(found).as("rendered %s objects", type.getSimpleName()).hasSize(1);
        return found.getFirst();
    }

    private static Path onPath(String program) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path candidate = Path.of(dir, program);
            if (Files.isExecutable(candidate)) {
                return candidate;
            }
        }
        return null;
    }
}
