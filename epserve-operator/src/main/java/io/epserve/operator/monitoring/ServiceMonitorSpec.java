package io.epserve.operator.monitoring;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import io.fabric8.kubernetes.api.model.LabelSelector;
import java.util.List;

/** Unknown fields (set by other tools) are ignored on read so that a foreign edit never breaks a reconcile. */
@JsonInclude(JsonInclude.Include.NON_NULL)
@JsonIgnoreProperties(ignoreUnknown = true)
public record ServiceMonitorSpec(LabelSelector selector, List<Endpoint> endpoints) {

    @JsonInclude(JsonInclude.Include.NON_NULL)
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Endpoint(String port, String path, String interval) {
    }
}
