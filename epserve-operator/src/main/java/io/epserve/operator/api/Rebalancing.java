package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Min;

@JsonInclude(JsonInclude.Include.NON_NULL)
public record Rebalancing(
        @JsonPropertyDescription("Re-place experts from measured load. Default: true.") Boolean enabled,
        @Min(10) @JsonPropertyDescription("Seconds between placement reviews. Default: 300.") Integer intervalSeconds,
        @JsonPropertyDescription("Re-place when the worst layer's balancedness (mean/max worker load, 0..1) drops below this. Default: 0.8.")
        Double minBalancedness) {
}
