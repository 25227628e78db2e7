package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.kubernetes.api.model.ResourceRequirements;

@JsonInclude(JsonInclude.Include.NON_NULL)
public record RoleResources(
        @JsonPropertyDescription("Requests and limits of each frontend container.") ResourceRequirements frontend,
        @JsonPropertyDescription("Requests and limits of each worker container.") ResourceRequirements worker) {
}
