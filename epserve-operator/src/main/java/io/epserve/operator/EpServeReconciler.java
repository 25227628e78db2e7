package io.epserve.operator;

import io.epserve.operator.EpServeConfig.Check;
import io.epserve.operator.WorkerScaler.Decision;
import io.epserve.operator.WorkerScaler.LoadSample;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeStatus;
import io.epserve.operator.dependent.ConfigMapDependent;
import io.epserve.operator.dependent.DisruptionBudgetDependent;
import io.epserve.operator.dependent.FrontendDeploymentDependent;
import io.epserve.operator.dependent.FrontendServiceDependent;
import io.epserve.operator.dependent.ServiceMonitorDependent;
import io.epserve.operator.dependent.WorkerServiceDependent;
import io.epserve.operator.dependent.WorkerStatefulSetDependent;
import io.epserve.operator.status.FrontendProbe;
import io.epserve.operator.status.FrontendReport;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.ErrorStatusUpdateControl;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.api.reconciler.Workflow;
import io.javaoperatorsdk.operator.api.reconciler.dependent.Dependent;
import io.javaoperatorsdk.operator.processing.dependent.workflow.CRDPresentActivationCondition;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Optional;

/**
 * Thin and idempotent: check the spec, look at the frontends, let the autoscaler pick a worker count, bring every
 * owned object to what that implies (one dependent resource each), write the status. An invalid spec only changes
 * the status (and the owned objects keep their last good shape) and is not retried until the spec changes; any
 * other failure lands in the status and is retried with back-off. Deletion needs no code: every owned object
 * carries an owner reference to the EpServe, and Kubernetes' garbage collector removes them with it.
 */
@Workflow(explicitInvocation = true, dependents = {
        @Dependent(name = "config", type = ConfigMapDependent.class),
        @Dependent(name = "worker-service", type = WorkerServiceDependent.class),
        @Dependent(name = "workers", type = WorkerStatefulSetDependent.class, dependsOn = "worker-service"),
        @Dependent(name = "disruption-budget", type = DisruptionBudgetDependent.class),
        @Dependent(name = "frontend-service", type = FrontendServiceDependent.class),
        @Dependent(name = "frontends", type = FrontendDeploymentDependent.class, dependsOn = "config"),
        @Dependent(name = "service-monitor", type = ServiceMonitorDependent.class, dependsOn = "frontend-service",
                activationCondition = CRDPresentActivationCondition.class)
})
// Events of the EpServe are not filtered by resource version: a spec edit that lands while this operator's status
// patch is in flight has a lower version than the patch's result and would otherwise wait for the next poll.
@ControllerConfiguration(name = EpServeReconciler.NAME, informer = @Informer(comparableResourceVersions = false))
public final class EpServeReconciler implements Reconciler<EpServe> {
    public static final String NAME = "epserve";
    /** How often a running EpServe's frontends are asked for load and placement, events aside. */
    public static final Duration POLL_INTERVAL = Duration.ofSeconds(30);

    private final FrontendProbe probe;
    private final Clock clock;

    public EpServeReconciler(FrontendProbe probe, Clock clock) {
        this.probe = probe;
        this.clock = clock;
    }

    @Override
    public UpdateControl<EpServe> reconcile(EpServe resource, Context<EpServe> context) {
        Instant now = clock.instant();
        return switch (EpServeConfig.check(resource)) {
            case Check.Invalid invalid -> {
                resource.setStatus(StatusReport.invalid(resource, invalid.message(), now));
                yield UpdateControl.patchStatus(resource);
            }
            case Check.Valid(EpServeConfig config) -> {
                FrontendReport report = probe.observe(readyFrontends(context, config));
                EpServeStatus previous = resource.getStatus();
                Optional<LoadSample> lastSample = lastSample(previous);
                Optional<LoadSample> sample = report.routedTokensValue().map(tokens -> new LoadSample(tokens, now));
                Optional<Instant> lastScale = Optional.ofNullable(previous).map(EpServeStatus::lastScaleTime).map(Instant::parse);
                int current = Optional.ofNullable(previous).map(EpServeStatus::workersDesired).orElse(config.minWorkers());
                Decision decision = WorkerScaler.decide(config.scaling(), current, lastSample, sample, lastScale, now);
                if (decision.autoscaled()) {
                    lastScale = Optional.of(now);
                }

                new Plan(config, decision.workers()).putInto(context);
                context.managedWorkflowAndDependentResourceContext().reconcileManagedWorkflow();

                StatusReport.Observed observed = new StatusReport.Observed(context.getSecondaryResource(StatefulSet.class),
                        context.getSecondaryResource(Deployment.class), report);
                resource.setStatus(StatusReport.running(resource, config, observed, decision,
                        WorkerScaler.remember(lastSample, sample), lastScale, now));
                yield UpdateControl.patchStatus(resource).rescheduleAfter(POLL_INTERVAL);
            }
        };
    }

    @Override
    public ErrorStatusUpdateControl<EpServe> updateErrorStatus(EpServe resource, Context<EpServe> context, Exception e) {
        resource.setStatus(StatusReport.failed(resource, e, clock.instant()));
        return ErrorStatusUpdateControl.patchStatus(resource);
    }

    /** Base URLs of the frontend pods that are ready and have an address; a pod's own URL, not the Service's. */
    private static List<URI> readyFrontends(Context<EpServe> context, EpServeConfig config) {
        return context.getClient().pods().inNamespace(config.namespace())
                .withLabels(Names.selector(config, Names.Component.FRONTEND)).list().getItems().stream()
                .filter(EpServeReconciler::isReady)
                .map(p -> URI.create("http://" + p.getStatus().getPodIP() + ":" + Names.FRONTEND_PORT))
                .toList();
    }

    private static boolean isReady(Pod pod) {
        return pod.getStatus() != null && pod.getStatus().getPodIP() != null && pod.getStatus().getConditions() != null
                && pod.getStatus().getConditions().stream()
                        .anyMatch(c -> "Ready".equals(c.getType()) && "True".equals(c.getStatus()));
    }

    private static Optional<LoadSample> lastSample(EpServeStatus previous) {
        return Optional.ofNullable(previous).map(EpServeStatus::loadSample)
                .filter(s -> s.routedTokens() != null && s.sampledAt() != null)
                .map(s -> new LoadSample(s.routedTokens(), Instant.parse(s.sampledAt())));
    }
}
