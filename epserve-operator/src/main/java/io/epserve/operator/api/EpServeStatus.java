package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.kubernetes.api.model.Condition;
import java.util.List;

/**
 * What the operator last saw. {@code workersDesired}, {@code lastScaleTime} and {@code loadSample} also carry the
 * autoscaler's state from one reconciliation to the next, so a restarted operator resumes where it was.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record EpServeStatus(
        @JsonPropertyDescription("Ready and Progressing, with a reason and a message naming what is wrong.")
        List<Condition> conditions,
        @JsonPropertyDescription("metadata.generation of the spec this status describes.")
        Long observedGeneration,
        @JsonPropertyDescription("Workers the operator asks for (between spec.workers.min and max).")
        Integer workersDesired,
        @JsonPropertyDescription("Worker pods ready.")
        Integer workersReady,
        @JsonPropertyDescription("Workers the frontend reports serving.")
        Integer workersServing,
        @JsonPropertyDescription("Frontend pods ready.")
        Integer frontendsReady,
        @JsonPropertyDescription("Placement epoch the frontend serves.")
        Long placementEpoch,
        @JsonPropertyDescription("Worst layer's balancedness (mean/max worker load, 1 is perfect).")
        Double balancedness,
        @JsonPropertyDescription("Where the frontend figures came from: placement-api, metrics, or unreachable.")
        String observedFrom,
        @JsonPropertyDescription("When the worker count last changed by autoscaling (RFC 3339).")
        String lastScaleTime,
        @JsonPropertyDescription("Last sample of the frontends' routed-token counter, for the rate.")
        LoadSample loadSample) {

    @JsonInclude(JsonInclude.Include.NON_NULL)
    public record LoadSample(Double routedTokens, String sampledAt) {
    }
}
