package io.epserve.operator.dependent;

import io.epserve.operator.Commands;
import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Names.Component;
import io.epserve.operator.Plan;
import io.epserve.operator.Pods;
import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.ProbeBuilder;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.DeploymentBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The frontends: a Deployment running {@code epserve serve} against the worker list in the ConfigMap. Probes use
 * the server's own endpoints: {@code /health} (the process answers) and {@code /ready} (the server says it can serve;
 * otherwise it answers 503 with the reason). The pod annotations let a Prometheus without the Prometheus Operator find /metrics.
 */
@KubernetesDependent(informer = @Informer(labelSelector = Names.MANAGED_SELECTOR))
public final class FrontendDeploymentDependent extends OwnedDependent<Deployment> {
    static final int STARTUP_SECONDS = 900;

    public FrontendDeploymentDependent() {
        super(Deployment.class);
    }

    @Override
    protected Deployment desired(EpServe primary, Context<EpServe> context) {
        Plan plan = Plan.of(context);
        EpServeConfig c = plan.config();
        Map<String, String> annotations = new LinkedHashMap<>();
        annotations.put(Names.CONFIG_HASH_ANNOTATION, ConfigMapDependent.hash(plan));
        annotations.put("prometheus.io/scrape", "true");
        annotations.put("prometheus.io/port", "" + Names.FRONTEND_PORT);
        annotations.put("prometheus.io/path", "/metrics");
        return new DeploymentBuilder()
                .withMetadata(Metadata.of(c, Names.frontendDeployment(c), Names.labels(c, Component.FRONTEND)))
                .withNewSpec()
                .withReplicas(c.frontends())
                // A new frontend cannot take the workers while the old one holds their lease, so a rolling update
                // would wait forever for it to become ready: stop the old one first.
                .withNewStrategy().withType("Recreate").endStrategy()
                .withNewSelector().withMatchLabels(Names.selector(c, Component.FRONTEND)).endSelector()
                .withNewTemplate()
                .withNewMetadata().withLabels(Names.labels(c, Component.FRONTEND)).withAnnotations(annotations).endMetadata()
                .withNewSpec()
                .addToContainers(new ContainerBuilder()
                        .withName("frontend")
                        .withImage(c.image())
                        .withArgs(Commands.frontend(c))
                        .addNewPort().withName(Names.FRONTEND_PORT_NAME).withContainerPort(Names.FRONTEND_PORT)
                        .withProtocol("TCP").endPort()
                        .withEnv(Pods.cacheEnv())
                        .addNewEnvFrom().withNewConfigMapRef().withName(Names.configMap(c)).endConfigMapRef().endEnvFrom()
                        .withResources(c.frontendResources())
                        .withVolumeMounts(Pods.mounts(c))
                        .withStartupProbe(httpProbe("/health", 10, STARTUP_SECONDS / 10))
                        .withReadinessProbe(httpProbe("/ready", 5, 2))
                        .withLivenessProbe(httpProbe("/health", 10, 6))
                        .build())
                .withVolumes(Pods.volumes(c))
                .endSpec()
                .endTemplate()
                .endSpec().build();
    }

    private static Probe httpProbe(String path, int periodSeconds, int failureThreshold) {
        return new ProbeBuilder().withNewHttpGet().withPath(path).withPort(new IntOrString(Names.FRONTEND_PORT_NAME)).endHttpGet()
                .withPeriodSeconds(periodSeconds).withFailureThreshold(failureThreshold).build();
    }
}
