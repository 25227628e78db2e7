package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

/** Exactly one of {@code persistentVolumeClaim} or {@code hostPath}; {@code path} is the folder inside it. */
@JsonInclude(JsonInclude.Include.NON_NULL)
public record ModelSource(
        @JsonPropertyDescription("Name of a PersistentVolumeClaim in the same namespace holding the model, mounted read-only.")
        String persistentVolumeClaim,
        @JsonPropertyDescription("Folder on every node holding the model, mounted read-only (single-node or pre-seeded clusters).")
        String hostPath,
        @JsonPropertyDescription("Model folder relative to the volume root. Default: the root.")
        String path) {
}
