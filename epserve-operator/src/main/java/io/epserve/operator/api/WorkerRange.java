package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public record WorkerRange(
        @Min(1) @JsonPropertyDescription("Fewest expert workers. Default: 1.") Integer min,
        @Min(1) @JsonPropertyDescription("Most expert workers. Default: min.") Integer max) {
}
