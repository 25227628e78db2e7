package io.epserve.operator.monitoring;

import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.Kind;
import io.fabric8.kubernetes.model.annotation.Version;

/**
 * The Prometheus Operator's {@code ServiceMonitor}, only the fields the operator sets. Its CRD belongs to the
 * Prometheus Operator: the operator creates one only where that CRD is installed.
 */
@Group("monitoring.coreos.com")
@Version("v1")
@Kind("ServiceMonitor")
public final class ServiceMonitor extends CustomResource<ServiceMonitorSpec, Void> implements Namespaced {

    // The spec is a record (no default constructor to instantiate): the operator always sets it.
    @Override
    protected ServiceMonitorSpec initSpec() {
        return null;
    }
}
