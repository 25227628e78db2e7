package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Max;
import io.fabric8.generator.annotation.Min;
import io.fabric8.generator.annotation.Required;

/**
 * What a cluster team asks for. Every field but {@code model} has a default (see {@code EpServeConfig}); the
 * operator checks the whole spec before touching any object and reports what is wrong in the status.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record EpServeSpec(
        @JsonPropertyDescription("Container image for frontends and workers. Default: ghcr.io/epserve/epserve:<operator version>.")
        String image,
        @Required
        @JsonPropertyDescription("Where the Hugging Face checkpoint folder is: a PersistentVolumeClaim or a host path.")
        ModelSource model,
        @JsonPropertyDescription("Routed experts held as q8_0, q4_0, q4_k, bf16, f16 or f32. Default: as stored.")
        ExpertDtype expertDtype,
        @Min(1)
        @Max(1)
        @JsonPropertyDescription("Frontend replicas (API, scheduler, KV cache, attention). Default and, while a worker serves one frontend at a time, only value: 1.")
        Integer frontends,
        @JsonPropertyDescription("Expert worker count range; the operator scales between min and max with load.")
        WorkerRange workers,
        @JsonPropertyDescription("Memory of each frontend's paged KV cache, e.g. 8GiB (epserve serve --kv-memory). Default: the server's.")
        String kvMemory,
        @Min(0)
        @JsonPropertyDescription("Redundant expert slots per worker, for replicas of hot experts. Default: 0.")
        Integer redundantExperts,
        @JsonPropertyDescription("When the frontend re-places experts from their measured load.")
        Rebalancing rebalancing,
        @JsonPropertyDescription("Compute resources per role.")
        RoleResources resources,
        @JsonPropertyDescription("Worker autoscaling from the routed-token rate the frontends report.")
        Autoscaling autoscaling,
        @Required
        @JsonPropertyDescription("Secret holding the shared worker credential (frontends send it, workers check it); workers listen beyond loopback only with one.")
        SecretKeyRef authSecret) {
}
