package io.epserve.operator;

import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.EnvVarBuilder;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeBuilder;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.VolumeMountBuilder;
import java.util.ArrayList;
import java.util.List;

/**
 * The volumes every epserve pod mounts: the model read-only (processes on one node share its pages), a writable
 * cache for converted experts ({@code --expert-dtype}; the model folder is read-only), and the worker credential.
 */
public final class Pods {
    public static final String MODEL_MOUNT = "/models";
    public static final String CACHE_MOUNT = "/var/cache/epserve";
    public static final String SECRET_MOUNT = "/etc/epserve/auth";
    public static final String CACHE_ENV = "EPSERVE_CACHE";

    private Pods() {
    }

    public static String modelDir(EpServeConfig c) {
        String path = c.model().path();
        return path.isEmpty() ? MODEL_MOUNT : MODEL_MOUNT + "/" + path;
    }

    public static String secretFile(EpServeConfig.AuthSecret s) {
        return SECRET_MOUNT + "/" + s.key();
    }

    public static List<Volume> volumes(EpServeConfig c) {
        List<Volume> volumes = new ArrayList<>();
        VolumeBuilder model = new VolumeBuilder().withName("model");
        switch (c.model()) {
            case EpServeConfig.Model.Claim claim -> model.withNewPersistentVolumeClaim(claim.claimName(), true);
            case EpServeConfig.Model.HostPath host -> model.withNewHostPath(host.hostPath(), "Directory");
        }
        volumes.add(model.build());
        volumes.add(new VolumeBuilder().withName("cache").withNewEmptyDir().endEmptyDir().build());
        c.authSecret().ifPresent(s -> volumes.add(new VolumeBuilder().withName("auth")
                .withNewSecret().withSecretName(s.secretName()).withDefaultMode(0400)
                .addNewItem().withKey(s.key()).withPath(s.key()).endItem().endSecret().build()));
        return volumes;
    }

    public static List<VolumeMount> mounts(EpServeConfig c) {
        List<VolumeMount> mounts = new ArrayList<>();
        mounts.add(new VolumeMountBuilder().withName("model").withMountPath(MODEL_MOUNT).withReadOnly(true).build());
        mounts.add(new VolumeMountBuilder().withName("cache").withMountPath(CACHE_MOUNT).build());
        c.authSecret().ifPresent(s -> mounts.add(
                new VolumeMountBuilder().withName("auth").withMountPath(SECRET_MOUNT).withReadOnly(true).build()));
        return mounts;
    }

    public static EnvVar cacheEnv() {
        return new EnvVarBuilder().withName(CACHE_ENV).withValue(CACHE_MOUNT).build();
    }
}
