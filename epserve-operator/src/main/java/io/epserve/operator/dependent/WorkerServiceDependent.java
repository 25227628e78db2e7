package io.epserve.operator.dependent;

import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Names.Component;
import io.epserve.operator.Plan;
import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;

/**
 * Headless Service of the workers: DNS names {@code <name>-worker-<i>.<name>-worker.<ns>.svc} for the frontends.
 * Not-ready workers are published too: a frontend starting beside a loading worker resolves it and retries the
 * connection instead of failing the name lookup.
 */
@KubernetesDependent(informer = @Informer(name = "worker-service", labelSelector = Names.MANAGED_SELECTOR))
public final class WorkerServiceDependent extends OwnedDependent<Service> {

    public WorkerServiceDependent() {
        super(Service.class);
    }

    @Override
    protected Service desired(EpServe primary, Context<EpServe> context) {
        EpServeConfig c = Plan.of(context).config();
        return new ServiceBuilder().withMetadata(Metadata.of(c, Names.workerService(c), Names.labels(c, Component.WORKER)))
                .withNewSpec()
                .withClusterIP("None")
                .withPublishNotReadyAddresses(true)
                .withSelector(Names.selector(c, Component.WORKER))
                .addNewPort().withName(Names.WORKER_PORT_NAME).withPort(Names.WORKER_PORT).withProtocol("TCP").endPort()
                .endSpec().build();
    }
}
