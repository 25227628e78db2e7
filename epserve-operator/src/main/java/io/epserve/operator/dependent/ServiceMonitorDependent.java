package io.epserve.operator.dependent;

import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Names.Component;
import io.epserve.operator.Plan;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.monitoring.ServiceMonitor;
import io.epserve.operator.monitoring.ServiceMonitorSpec;
import io.fabric8.kubernetes.api.model.LabelSelectorBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;
import java.util.List;

/**
 * Tells a Prometheus Operator to scrape the frontends' /metrics (which also carry the per-worker series). Active
 * only where the ServiceMonitor CRD exists; elsewhere the frontend pods' prometheus.io annotations serve a plain
 * Prometheus.
 */
@KubernetesDependent(informer = @Informer(labelSelector = Names.MANAGED_SELECTOR))
public final class ServiceMonitorDependent extends OwnedDependent<ServiceMonitor> {
    public static final String SCRAPE_INTERVAL = "15s";

    public ServiceMonitorDependent() {
        super(ServiceMonitor.class);
    }

    @Override
    protected ServiceMonitor desired(EpServe primary, Context<EpServe> context) {
        EpServeConfig c = Plan.of(context).config();
        ServiceMonitor monitor = new ServiceMonitor();
        monitor.setMetadata(Metadata.of(c, Names.serviceMonitor(c), Names.labels(c, Component.FRONTEND)));
        monitor.setSpec(new ServiceMonitorSpec(
                new LabelSelectorBuilder().withMatchLabels(Names.selector(c, Component.FRONTEND)).build(),
                List.of(new ServiceMonitorSpec.Endpoint(Names.FRONTEND_PORT_NAME, "/metrics", SCRAPE_INTERVAL))));
        return monitor;
    }
}
