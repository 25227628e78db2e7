package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public record Autoscaling(
        @JsonPropertyDescription("Routed tokens per second one worker should carry; absent = no autoscaling (workers stay at min).")
        Double targetTokensPerWorkerSecond,
        @Min(0) @JsonPropertyDescription("Seconds after a scale change before the next one. Default: 300.") Integer cooldownSeconds) {
}
