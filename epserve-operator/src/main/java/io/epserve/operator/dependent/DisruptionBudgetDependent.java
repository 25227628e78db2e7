package io.epserve.operator.dependent;

import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Names.Component;
import io.epserve.operator.Plan;
import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudgetBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;

/**
 * At most one worker evicted at a time by a node drain: each worker holds experts no other may hold, so losing
 * two at once can leave experts with no replica (the frontend then computes them itself, slowly).
 */
@KubernetesDependent(informer = @Informer(labelSelector = Names.MANAGED_SELECTOR))
public final class DisruptionBudgetDependent extends OwnedDependent<PodDisruptionBudget> {

    public DisruptionBudgetDependent() {
        super(PodDisruptionBudget.class);
    }

    @Override
    protected PodDisruptionBudget desired(EpServe primary, Context<EpServe> context) {
        EpServeConfig c = Plan.of(context).config();
        return new PodDisruptionBudgetBuilder()
                .withMetadata(Metadata.of(c, Names.disruptionBudget(c), Names.labels(c, Component.WORKER)))
                .withNewSpec()
                .withMaxUnavailable(new IntOrString(1))
                .withNewSelector().withMatchLabels(Names.selector(c, Component.WORKER)).endSelector()
                .endSpec().build();
    }
}
