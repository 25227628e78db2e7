package io.epserve.operator;

import io.epserve.operator.status.FrontendProbe;
import io.epserve.operator.status.HttpFrontendProbe;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.javaoperatorsdk.operator.Operator;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;

/**
 * The operator process: one controller for EpServe resources in every namespace the service account may see.
 * Tests build it through {@link #create} with the same settings, against a mock API server.
 */
public final class EpServeOperator {
    /** Deadline of each call to a frontend's status endpoints. */
    public static final Duration PROBE_TIMEOUT = Duration.ofSeconds(2);

    private EpServeOperator() {
    }

    public static void main(String[] args) throws InterruptedException, IOException {
        run(new KubernetesClientBuilder().build());
    }

    /**
     * Starts the operator and blocks; it stops (finishing reconciliations in flight) when the JVM shuts down, as on
     * the SIGTERM a pod gets. Serves {@code /healthz} on {@link OperatorHealth#PORT}. Throws if the API server cannot
     * be reached or refuses the watches at start, or if the health port is taken.
     */
    public static void run(KubernetesClient client) throws InterruptedException, IOException {
        Operator operator = create(client, new HttpFrontendProbe(PROBE_TIMEOUT), Clock.systemUTC());
        operator.installShutdownHook(Duration.ofSeconds(10));
        // Listening before the start, so the kubelet sees 503 (not a refused connection) while informers sync.
        OperatorHealth health = new OperatorHealth(operator.getRuntimeInfo(), new InetSocketAddress(OperatorHealth.PORT));
        try {
            operator.start();
            new CountDownLatch(1).await(); // until the JVM exits: the shutdown hook stops the operator
        } finally {
            health.close();
        }
    }

    /**
     * Plain create/update/merge-patch instead of server-side apply, for owned objects and the status alike: the
     * objects are wholly ours, so field ownership buys nothing, and the same code path then runs against the
     * fabric8 mock API server in the tests, which does not implement server-side apply.
     */
    public static Operator create(KubernetesClient client, FrontendProbe probe, Clock clock) {
        Operator operator = new Operator(o -> o.withKubernetesClient(client)
                .withSSABasedCreateUpdateMatchForDependentResources(false)
                .withUseSSAToPatchPrimaryResource(false)
                .withCloseClientOnStop(true)
                // On shutdown, a reconciliation in flight finishes (its status write included) before the client closes.
                .withReconciliationTerminationTimeout(Duration.ofSeconds(5)));
        operator.register(new EpServeReconciler(probe, clock));
        return operator;
    }
}
