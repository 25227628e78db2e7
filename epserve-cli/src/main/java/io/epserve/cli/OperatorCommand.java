package io.epserve.cli;

import io.epserve.operator.EpServeOperator;
import io.epserve.operator.OperatorHealth;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.OperatorException;
import java.io.IOException;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;

/** {@code epserve operator}: the Kubernetes operator, as the operator Deployment in deploy/ runs it. */
@Command(name = "operator", mixinStandardHelpOptions = true,
        description = {"Run the Kubernetes operator: watches EpServe resources (epserve.io/v1alpha1) in every "
                + "namespace its service account may read, and keeps each one's workers (StatefulSet and "
                + "headless Service), frontends (Deployment and Service), ConfigMap, PodDisruptionBudget and "
                + "ServiceMonitor as its spec says, scaling workers with the frontends' load. Connects with "
                + "the in-cluster service account, else $KUBECONFIG or ~/.kube/config. Serves GET /healthz on "
                + "port 8081 for the kubelet. Runs until stopped."})
final class OperatorCommand implements Callable<Integer> {

    @Override
    public Integer call() throws InterruptedException {
        KubernetesClient client = new KubernetesClientBuilder().build();
        String apiServer = client.getConfiguration().getMasterUrl();
        try {
            EpServeOperator.run(client);
            return 0;
        } catch (OperatorException | KubernetesClientException e) {
            throw new Main.UsageError("cannot run the operator against the Kubernetes API at " + apiServer + ": "
                    + e.getMessage());
        } catch (IOException e) {
            throw new Main.UsageError("cannot serve /healthz on port " + OperatorHealth.PORT + ": " + e.getMessage());
        }
    }
}
