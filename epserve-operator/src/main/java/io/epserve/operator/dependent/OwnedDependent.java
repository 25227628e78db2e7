package io.epserve.operator.dependent;

import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.OwnerReferenceBuilder;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.CRUDKubernetesDependentResource;

/**
 * An object the EpServe owns outright: created, kept equal to its desired shape, and deleted with the EpServe by
 * Kubernetes' garbage collector. Its owner reference marks the EpServe as its controller (so {@code kubectl}
 * shows "Controlled By" and no other controller adopts it) and blocks the owner's deletion in foreground
 * cascading until it is gone.
 */
abstract class OwnedDependent<R extends HasMetadata> extends CRUDKubernetesDependentResource<R, EpServe> {

    OwnedDependent(Class<R> type) {
        super(type);
    }

    @Override
    protected void addReferenceHandlingMetadata(R desired, EpServe primary) {
        desired.getMetadata().setOwnerReferences(null);
        desired.addOwnerReference(new OwnerReferenceBuilder()
                .withApiVersion(primary.getApiVersion())
                .withKind(primary.getKind())
                .withName(primary.getMetadata().getName())
                .withUid(primary.getMetadata().getUid())
                .withController(true)
                .withBlockOwnerDeletion(true)
                .build());
    }
}
