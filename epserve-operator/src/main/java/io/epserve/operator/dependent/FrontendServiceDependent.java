package io.epserve.operator.dependent;

import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Names.Component;
import io.epserve.operator.Plan;
import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;

/** The API: a ClusterIP Service named as the EpServe, over the frontends' OpenAI API, live view and /metrics. */
@KubernetesDependent(informer = @Informer(name = "frontend-service", labelSelector = Names.MANAGED_SELECTOR))
public final class FrontendServiceDependent extends OwnedDependent<Service> {

    public FrontendServiceDependent() {
        super(Service.class);
    }

    @Override
    protected Service desired(EpServe primary, Context<EpServe> context) {
        EpServeConfig c = Plan.of(context).config();
        return new ServiceBuilder()
                .withMetadata(Metadata.of(c, Names.frontendService(c), Names.labels(c, Component.FRONTEND)))
                .withNewSpec()
                .withType("ClusterIP")
                .withSelector(Names.selector(c, Component.FRONTEND))
                .addNewPort().withName(Names.FRONTEND_PORT_NAME).withPort(Names.FRONTEND_PORT)
                .withTargetPort(new IntOrString(Names.FRONTEND_PORT_NAME)).withProtocol("TCP").endPort()
                .endSpec().build();
    }
}
