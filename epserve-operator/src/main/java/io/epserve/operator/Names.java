package io.epserve.operator;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every name, label and port the operator gives the objects of one EpServe. The API Service takes the resource's
 * own name, so clients call {@code http://<name>:8080}.
 */
public final class Names {
    public static final int FRONTEND_PORT = 8080;
    public static final String FRONTEND_PORT_NAME = "http";
    public static final int WORKER_PORT = 7070;
    public static final String WORKER_PORT_NAME = "grpc";

    public static final String LABEL_NAME = "app.kubernetes.io/name";
    public static final String LABEL_INSTANCE = "app.kubernetes.io/instance";
    public static final String LABEL_COMPONENT = "app.kubernetes.io/component";
    public static final String LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
    public static final String MANAGED_BY = "epserve-operator";
    /** The dependent resources' informers watch only objects with this label. */
    public static final String MANAGED_SELECTOR = LABEL_MANAGED_BY + "=" + MANAGED_BY;
    /** Hash of the ConfigMap's data on the frontend pod template: a changed worker list rolls the frontends. */
    public static final String CONFIG_HASH_ANNOTATION = "epserve.io/config-hash";

    public enum Component {
        FRONTEND("frontend"), WORKER("worker");

        private final String label;

        Component(String label) {
            this.label = label;
        }

        public String label() {
            return label;
        }
    }

    private Names() {
    }

    public static String frontendService(EpServeConfig c) {
        return c.name();
    }

    public static String frontendDeployment(EpServeConfig c) {
        return c.name() + "-frontend";
    }

    public static String workerStatefulSet(EpServeConfig c) {
        return c.name() + "-worker";
    }

    /** Headless: gives each worker pod the stable DNS name the frontends dial. */
    public static String workerService(EpServeConfig c) {
        return c.name() + "-worker";
    }

    public static String configMap(EpServeConfig c) {
        return c.name() + "-config";
    }

    public static String disruptionBudget(EpServeConfig c) {
        return c.name() + "-worker";
    }

    public static String serviceMonitor(EpServeConfig c) {
        return c.name();
    }

    /** {@code host:port} of each of the first {@code workers} worker pods, in ordinal order. */
    public static List<String> workerAddresses(EpServeConfig c, int workers) {
        List<String> addresses = new ArrayList<>(workers);
        for (int i = 0; i < workers; i++) {
            addresses.add(workerStatefulSet(c) + "-" + i + "." + workerService(c) + "." + c.namespace() + ".svc:" + WORKER_PORT);
        }
        return addresses;
    }

    /** Labels every object of this EpServe carries. */
    public static Map<String, String> labels(EpServeConfig c) {
        Map<String, String> labels = new LinkedHashMap<>();
        labels.put(LABEL_NAME, "epserve");
        labels.put(LABEL_INSTANCE, c.name());
        labels.put(LABEL_MANAGED_BY, MANAGED_BY);
        return labels;
    }

    public static Map<String, String> labels(EpServeConfig c, Component component) {
        Map<String, String> labels = labels(c);
        labels.put(LABEL_COMPONENT, component.label());
        return labels;
    }

    /** The pod selector of one role: stable across operator versions, as a Deployment's selector is immutable. */
    public static Map<String, String> selector(EpServeConfig c, Component component) {
        return Map.of(LABEL_NAME, "epserve", LABEL_INSTANCE, c.name(), LABEL_COMPONENT, component.label());
    }
}
