package io.epserve.operator;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.api.ModelSource;
import io.epserve.operator.api.SecretKeyRef;
import io.epserve.operator.monitoring.ServiceMonitor;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import org.junit.jupiter.api.Test;

/** Where the Prometheus Operator's CRD is absent, everything but the ServiceMonitor is made, and nothing fails. */
class WithoutPrometheusOperatorTest {

    @Test
    void noServiceMonitorAndNoError() {
        try (OperatorHarness h = new OperatorHarness(false)) {
            h.create(EpServeReconcilerTest.epServe("small", new EpServeSpec(null,
                    new ModelSource("models", null, null), null, null, null, null, null, null, null, null,
                    new SecretKeyRef("auth", null))));
            h.await(Deployment.class, "small-frontend", d -> true);
            h.await(Service.class, "small", s -> true);
            OperatorHarness.await("status", () -> h.get("small").getStatus(), s -> s.workersDesired() != null);
            assertThat(h.get("small").getStatus().conditions()).noneMatch(c -> "ReconcileError".equals(c.getReason()));
            assertThat(h.client.resources(ServiceMonitor.class).inAnyNamespace().list().getItems()).isEmpty();
        }
    }
}
