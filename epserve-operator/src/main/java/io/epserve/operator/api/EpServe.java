package io.epserve.operator.api;

import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn.Type;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.ShortNames;
import io.fabric8.kubernetes.model.annotation.Version;

/**
 * One expert-parallel epserve service: frontends that own requests, and a pool of expert workers that own the
 * routed experts. The operator turns this into a worker StatefulSet, a frontend Deployment and their Services.
 * The CRD YAML is generated from this class at build time (deploy/crd holds the copy a cluster applies).
 */
// What `kubectl get epserve` shows (the generator orders columns by JSON path).
@AdditionalPrinterColumn(name = "Ready", jsonPath = ".status.conditions[?(@.type==\"Ready\")].status", type = Type.STRING)
@AdditionalPrinterColumn(name = "Workers", jsonPath = ".status.workersReady", type = Type.INTEGER)
@AdditionalPrinterColumn(name = "Desired", jsonPath = ".status.workersDesired", type = Type.INTEGER)
@AdditionalPrinterColumn(name = "Epoch", jsonPath = ".status.placementEpoch", type = Type.INTEGER)
@Group(EpServe.GROUP)
@Version(EpServe.VERSION)
@ShortNames("eps")
public final class EpServe extends CustomResource<EpServeSpec, EpServeStatus> implements Namespaced {
    public static final String GROUP = "epserve.io";
    public static final String VERSION = "v1alpha1";

    // A resource whose spec is missing stays without one, so validation can name it instead of reading defaults.
    @Override
    protected EpServeSpec initSpec() {
        return null;
    }

    @Override
    protected EpServeStatus initStatus() {
        return null;
    }
}
