package io.epserve.operator;

import io.epserve.operator.WorkerScaler.Decision;
import io.epserve.operator.WorkerScaler.LoadSample;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeStatus;
import io.epserve.operator.status.FrontendReport;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import java.time.Instant;
import java.util.List;
import java.util.Optional;

/**
 * Builds the status from what was observed. Conditions follow the Kubernetes convention: {@code Ready} and
 * {@code Progressing}, each True/False with a CamelCase reason and a message for people; a condition keeps its
 * lastTransitionTime while its status does not change, so a steady resource gets identical statuses.
 */
public final class StatusReport {
    public static final String READY = "Ready";
    public static final String PROGRESSING = "Progressing";
    public static final String REASON_INVALID_SPEC = "InvalidSpec";
    public static final String REASON_RECONCILE_ERROR = "ReconcileError";

    private StatusReport() {
    }

    /** What one reconciliation saw of the owned objects and the frontends. */
    public record Observed(Optional<StatefulSet> workers, Optional<Deployment> frontends, FrontendReport frontend) {
    }

    public static EpServeStatus running(EpServe resource, EpServeConfig config, Observed observed, Decision decision,
            Optional<LoadSample> sample, Optional<Instant> lastScale, Instant now) {
        EpServeStatus previous = resource.getStatus();
        // Optional.map turns an absent status or count into empty: a fresh object has no ready replicas yet.
        int workersReady = observed.workers().map(StatefulSet::getStatus).map(s -> s.getReadyReplicas()).orElse(0);
        int frontendsReady = observed.frontends().map(Deployment::getStatus).map(s -> s.getReadyReplicas()).orElse(0);
        boolean workersOk = workersReady >= decision.workers();
        boolean frontendsOk = frontendsReady >= config.frontends();

        Condition ready = workersOk && frontendsOk
                ? condition(previous, READY, true, "Ready", decision.workers() + " workers and " + config.frontends()
                        + " frontends ready", resource, now)
                : condition(previous, READY, false, workersOk ? "FrontendsNotReady" : "WorkersNotReady",
                        workersReady + "/" + decision.workers() + " workers and " + frontendsReady + "/" + config.frontends()
                                + " frontends ready", resource, now);
        Condition progressing = progressing(previous, resource, decision, workersOk && frontendsOk, now);

        FrontendReport f = observed.frontend();
        return new EpServeStatus(List.of(ready, progressing), resource.getMetadata().getGeneration(), decision.workers(),
                workersReady, f.workersServing().isPresent() ? f.workersServing().getAsInt() : null, frontendsReady,
                f.placementEpoch().isPresent() ? f.placementEpoch().getAsLong() : null,
                f.balancedness().isPresent() ? f.balancedness().getAsDouble() : null,
                f.source().label(),
                lastScale.map(Instant::toString).orElse(null),
                sample.map(s -> new EpServeStatus.LoadSample(s.routedTokens(), s.at().toString())).orElse(null));
    }

    /** The spec cannot be acted on: say why, keep the last figures, leave the owned objects as they are. */
    public static EpServeStatus invalid(EpServe resource, String message, Instant now) {
        return withConditions(resource, REASON_INVALID_SPEC, message, now);
    }

    /** Reconciling threw (the API server refused an object, say): the message goes to the status, JOSDK retries. */
    public static EpServeStatus failed(EpServe resource, Exception e, Instant now) {
        String message = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        return withConditions(resource, REASON_RECONCILE_ERROR, message, now);
    }

    private static EpServeStatus withConditions(EpServe resource, String reason, String message, Instant now) {
        EpServeStatus p = resource.getStatus() == null
                ? new EpServeStatus(null, null, null, null, null, null, null, null, null, null, null)
                : resource.getStatus();
        List<Condition> conditions = List.of(condition(p, READY, false, reason, message, resource, now),
                condition(p, PROGRESSING, false, reason, message, resource, now));
        return new EpServeStatus(conditions, resource.getMetadata().getGeneration(), p.workersDesired(), p.workersReady(),
                p.workersServing(), p.frontendsReady(), p.placementEpoch(), p.balancedness(), p.observedFrom(),
                p.lastScaleTime(), p.loadSample());
    }

    private static Condition progressing(EpServeStatus previous, EpServe resource, Decision decision, boolean allReady,
            Instant now) {
        return switch (decision.reason()) {
            case SCALED_UP, SCALED_DOWN -> condition(previous, PROGRESSING, true,
                    decision.reason() == WorkerScaler.Reason.SCALED_UP ? "ScalingUp" : "ScalingDown",
                    String.format("workers to %d: %.0f routed tokens/s", decision.workers(), decision.tokensPerSecond()),
                    resource, now);
            default -> allReady
                    ? condition(previous, PROGRESSING, false, "Stable", "all replicas ready", resource, now)
                    : condition(previous, PROGRESSING, true, "RollingOut", "waiting for replicas to become ready",
                            resource, now);
        };
    }

    private static Condition condition(EpServeStatus previous, String type, boolean status, String reason, String message,
            EpServe resource, Instant now) {
        String value = status ? "True" : "False";
        String since = Optional.ofNullable(previous).map(EpServeStatus::conditions).orElse(List.of()).stream()
                .filter(c -> type.equals(c.getType()) && value.equals(c.getStatus()))
                .map(Condition::getLastTransitionTime).findFirst().orElse(now.toString());
        return new ConditionBuilder().withType(type).withStatus(value).withReason(reason).withMessage(message)
                .withLastTransitionTime(since).withObservedGeneration(resource.getMetadata().getGeneration()).build();
    }
}
