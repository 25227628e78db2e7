package io.epserve.operator;

import io.javaoperatorsdk.operator.api.reconciler.Context;

/**
 * What this reconciliation builds: the checked config and the worker count the autoscaler chose. The reconciler
 * puts it into the context before running the dependent resources, which read it back through {@link #of}.
 */
public record Plan(EpServeConfig config, int workers) {

    public static Plan of(Context<?> context) {
        return context.managedWorkflowAndDependentResourceContext().getMandatory(Plan.class, Plan.class);
    }

    void putInto(Context<?> context) {
        context.managedWorkflowAndDependentResourceContext().put(Plan.class, this);
    }
}
