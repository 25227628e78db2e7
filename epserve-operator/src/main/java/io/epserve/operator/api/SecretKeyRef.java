package io.epserve.operator.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

@JsonInclude(JsonInclude.Include.NON_NULL)
public record SecretKeyRef(
        @JsonPropertyDescription("Secret name, in the resource's namespace.") String name,
        @JsonPropertyDescription("Key of the shared secret in it. Default: secret.") String key) {
}
