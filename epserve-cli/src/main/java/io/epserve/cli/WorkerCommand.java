package io.epserve.cli;

import io.epserve.model.ModelExperts;
import io.epserve.rpc.HostPort;
import io.epserve.rpc.TlsFiles;
import io.epserve.rpc.WorkerModel;
import io.epserve.rpc.WorkerProcess;
import io.epserve.rpc.WorkerSecret;
import io.epserve.rpc.WorkerSecurity;
import io.epserve.tensor.DType;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code epserve worker}: an expert worker process (DESIGN.md §1). */
@Command(name = "worker", mixinStandardHelpOptions = true,
        description = {"Run an expert worker: a gRPC server (epserve.expert.v1.ExpertService and the "
                + "standard health service) that holds the routed experts of its --model a frontend assigns to it, maps "
                + "only their tensors, and answers the frontend's per-layer compute calls. It serves one frontend "
                + "at a time. Prints one line 'epserve worker listening on HOST:PORT' (the real port when 0 was "
                + "asked for) once serving, then serves until stopped: SIGTERM drains it (its frontend places its experts on "
                + "other workers and releases it, then it exits 0). With --join it registers at a frontend's --membership-listen "
                + "address and gets experts at the next placement epoch. Kernel threads: -Depserve.threads=N on the JVM. "
                + "Without --auth-secret-file or TLS it listens on loopback only."})
final class WorkerCommand implements Callable<Integer> {

    @Option(names = "--listen", required = true, paramLabel = "HOST:PORT",
            description = "Address to listen on, e.g. 127.0.0.1:7071 or 0.0.0.0:7071 (needs authentication); port 0 picks a free port.")
    String listen;

    @Option(names = "--model", required = true, paramLabel = "DIR|FILE.gguf",
            description = "The model this worker serves (config.json + *.safetensors, or a GGUF file); frontends must run the same one.")
    Path model;

    @Option(names = "--expert-dtype", paramLabel = "DTYPE",
            description = "Hold the routed experts in q8_0, q4_0, q4_k, bf16, f16 or f32 (from the model's converted-experts "
                    + "cache, built on first use); frontends must give the same --expert-dtype. Default: as stored.")
    String expertDtype;

    @Option(names = "--cache-dir", paramLabel = "DIR",
            description = "Where the converted-experts cache goes when the model directory is not writable "
                    + "(default $EPSERVE_CACHE, else ~/.cache/epserve).")
    Path cacheDir;

    @Option(names = "--auth-secret-file", paramLabel = "FILE",
            description = "File holding the shared secret every call must carry (frontends: --worker-secret-file).")
    Path secretFile;

    @Option(names = "--tls-cert", paramLabel = "PEM", description = "This worker's certificate for mutual TLS (with --tls-key and --tls-ca).")
    Path tlsCert;

    @Option(names = "--tls-key", paramLabel = "PEM", description = "The private key (PKCS#8 PEM) of --tls-cert.")
    Path tlsKey;

    @Option(names = "--tls-ca", paramLabel = "PEM", description = "The CA certificate frontends' client certificates must be signed by.")
    Path tlsCa;

    @Option(names = "--lease-timeout", paramLabel = "SECONDS", defaultValue = "30",
            description = "How long the frontend that holds this worker may send nothing before another frontend may take it "
                    + "(default ${DEFAULT-VALUE}).")
    long leaseSeconds;

    @Option(names = "--join", paramLabel = "FRONTEND:PORT",
            description = "Register at this frontend's membership service (its serve --membership-listen) at start, retrying "
                    + "until accepted, and again whenever the frontend forgot this worker.")
    String join;

    @Option(names = "--advertise", paramLabel = "HOST:PORT",
            description = "With --join: the address the frontend reaches this worker at (default: the --listen address with its real port).")
    String advertise;

    @Option(names = "--host-label", paramLabel = "LABEL",
            description = "With --join: where this worker runs; the balanced placement keeps a group of experts' replicas on one host.")
    String hostLabel;

    @Option(names = "--drain-timeout", paramLabel = "SECONDS", defaultValue = "60",
            description = "On SIGTERM, how long to keep serving while the frontend places this worker's experts elsewhere and "
                    + "releases it; then the worker exits 0 anyway (default ${DEFAULT-VALUE}).")
    long drainSeconds;

    @Override
    public Integer call() throws InterruptedException {
        HostPort address = HostPort.parse(listen, "--listen");
        DType dtype;
        try {
            dtype = expertDtype == null ? null : DType.parse(expertDtype);
        } catch (IllegalArgumentException e) {
            throw new Main.UsageError("--expert-dtype: " + e.getMessage());
        }
        if (leaseSeconds < 1) {
            throw new Main.UsageError("--lease-timeout must be at least 1 second, got " + leaseSeconds);
        }
        if (drainSeconds < 0) {
            throw new Main.UsageError("--drain-timeout must be 0 or more seconds, got " + drainSeconds);
        }
        if (join == null && (advertise != null || hostLabel != null)) {
            throw new Main.UsageError("--advertise and --host-label go with --join FRONTEND:PORT");
        }
        HostPort frontend = join == null ? null : HostPort.parse(join, "--join");
        HostPort advertised = advertise == null ? null : HostPort.parse(advertise, "--advertise");
        WorkerSecurity security = new WorkerSecurity(secretFile == null ? null : WorkerSecret.fromFile(secretFile, "--auth-secret-file"),
                TlsFiles.fromOptions(tlsCert, tlsKey, tlsCa));
        WorkerProcess.serve(new WorkerProcess.Settings(address, new WorkerModel(model, dtype, cacheDir), security,
                Duration.ofSeconds(leaseSeconds), frontend, advertised, hostLabel, Duration.ofSeconds(drainSeconds)), ModelExperts::open,
                System.out, System.err);
        return 0;
    }
}
