package io.epserve.operator.dependent;

import io.epserve.operator.EpServeConfig;
import io.fabric8.kubernetes.api.model.ObjectMeta;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.util.Map;

/** Object metadata of an owned object: name, the EpServe's namespace, labels (owner references JOSDK adds). */
final class Metadata {
    private Metadata() {
    }

    static ObjectMeta of(EpServeConfig c, String name, Map<String, String> labels) {
        return new ObjectMetaBuilder().withName(name).withNamespace(c.namespace()).withLabels(labels).build();
    }
}
