package io.epserve.operator;

import java.util.ArrayList;
import java.util.List;

/**
 * The {@code epserve} command lines the pods run (the image's entrypoint is {@code epserve}, so these are its
 * arguments). A worker's model, dtype and credential come from its own command line, never from the network.
 */
public final class Commands {
    /** Environment variable, from the ConfigMap, holding the frontends' worker list (expanded by the kubelet). */
    public static final String WORKERS_ENV = "EPSERVE_WORKERS";

    private Commands() {
    }

    public static List<String> worker(EpServeConfig c) {
        List<String> args = new ArrayList<>(List.of("worker", "--listen", "0.0.0.0:" + Names.WORKER_PORT,
                "--model", Pods.modelDir(c)));
        c.expertDtype().ifPresent(d -> args.addAll(List.of("--expert-dtype", d.flagValue())));
        c.authSecret().ifPresent(s -> args.addAll(List.of("--auth-secret-file", Pods.secretFile(s))));
        return List.copyOf(args);
    }

    public static List<String> frontend(EpServeConfig c) {
        List<String> args = new ArrayList<>(List.of("serve", "--host", "0.0.0.0", "--port", "" + Names.FRONTEND_PORT,
                "--model", Pods.modelDir(c), "--workers", "$(" + WORKERS_ENV + ")"));
        c.kvMemory().ifPresent(m -> args.addAll(List.of("--kv-memory", m)));
        c.expertDtype().ifPresent(d -> args.addAll(List.of("--expert-dtype", d.flagValue())));
        c.authSecret().ifPresent(s -> args.addAll(List.of("--worker-secret-file", Pods.secretFile(s))));
        return List.copyOf(args);
    }
}
