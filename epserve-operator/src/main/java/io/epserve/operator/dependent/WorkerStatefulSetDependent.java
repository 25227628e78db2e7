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
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.apps.StatefulSetBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;

/**
 * The expert workers: a StatefulSet, so worker i keeps the name (and DNS entry) the frontends' worker list and
 * placement refer to. Pods start in parallel (no worker waits for another) and are probed on the gRPC port by
 * TCP: the gRPC health service sits behind the worker credential when one is set, which a kubelet probe lacks.
 */
@KubernetesDependent(informer = @Informer(labelSelector = Names.MANAGED_SELECTOR))
public final class WorkerStatefulSetDependent extends OwnedDependent<StatefulSet> {
    /** Mapping a large checkpoint, or converting experts to {@code --expert-dtype}, can take minutes. */
    static final int STARTUP_SECONDS = 900;

    public WorkerStatefulSetDependent() {
        super(StatefulSet.class);
    }

    @Override
    protected StatefulSet desired(EpServe primary, Context<EpServe> context) {
        Plan plan = Plan.of(context);
        EpServeConfig c = plan.config();
        return new StatefulSetBuilder()
                .withMetadata(Metadata.of(c, Names.workerStatefulSet(c), Names.labels(c, Component.WORKER)))
                .withNewSpec()
                .withReplicas(plan.workers())
                .withServiceName(Names.workerService(c))
                .withPodManagementPolicy("Parallel")
                .withNewSelector().withMatchLabels(Names.selector(c, Component.WORKER)).endSelector()
                .withNewTemplate()
                .withNewMetadata().withLabels(Names.labels(c, Component.WORKER)).endMetadata()
                .withNewSpec()
                .addToContainers(new ContainerBuilder()
                        .withName("worker")
                        .withImage(c.image())
                        .withArgs(Commands.worker(c))
                        .addNewPort().withName(Names.WORKER_PORT_NAME).withContainerPort(Names.WORKER_PORT)
                        .withProtocol("TCP").endPort()
                        .withEnv(Pods.cacheEnv())
                        .withResources(c.workerResources())
                        .withVolumeMounts(Pods.mounts(c))
                        .withStartupProbe(tcpProbe(10, STARTUP_SECONDS / 10))
                        .withReadinessProbe(tcpProbe(5, 2))
                        .withLivenessProbe(tcpProbe(10, 6))
                        .build())
                .withVolumes(Pods.volumes(c))
                .endSpec()
                .endTemplate()
                .endSpec().build();
    }

    private static Probe tcpProbe(int periodSeconds, int failureThreshold) {
        return new ProbeBuilder().withNewTcpSocket().withPort(new IntOrString(Names.WORKER_PORT_NAME)).endTcpSocket()
                .withPeriodSeconds(periodSeconds).withFailureThreshold(failureThreshold).build();
    }
}
