package io.epserve.cli;

import io.epserve.rpc.TlsFiles;
import io.epserve.rpc.WorkerSecret;
import io.epserve.rpc.WorkerSecurity;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** How a frontend authenticates to its remote expert workers: the workers' shared secret and/or mutual TLS. */
final class WorkerSecurityOptions {
    @Option(names = "--worker-secret-file", paramLabel = "FILE",
            description = "File holding the shared secret of the expert workers (their --auth-secret-file), sent on every call.")
    Path secretFile;

    @Option(names = "--worker-tls-cert", paramLabel = "PEM",
            description = "This frontend's client certificate for mutual TLS with the workers (with --worker-tls-key and --worker-tls-ca).")
    Path tlsCert;

    @Option(names = "--worker-tls-key", paramLabel = "PEM", description = "The private key (PKCS#8 PEM) of --worker-tls-cert.")
    Path tlsKey;

    @Option(names = "--worker-tls-ca", paramLabel = "PEM", description = "The CA certificate the workers' certificates must be signed by.")
    Path tlsCa;

    /** The security these options describe (NONE when none is given); a clear error for a bad file. */
    WorkerSecurity security() {
        return new WorkerSecurity(secretFile == null ? null : WorkerSecret.fromFile(secretFile, "--worker-secret-file"),
                TlsFiles.fromOptions(tlsCert, tlsKey, tlsCa));
    }

    /** The same settings as a worker's command-line arguments (for workers this process starts). */
    List<String> workerArgs() {
        List<String> args = new ArrayList<>();
        if (secretFile != null) {
            args.addAll(List.of("--auth-secret-file", secretFile.toAbsolutePath().toString()));
        }
        if (tlsCert != null || tlsKey != null || tlsCa != null) {
            TlsFiles tls = TlsFiles.fromOptions(tlsCert, tlsKey, tlsCa);
            args.addAll(List.of("--tls-cert", tls.cert().toAbsolutePath().toString(), "--tls-key", tls.key().toAbsolutePath().toString(),
                    "--tls-ca", tls.ca().toAbsolutePath().toString()));
        }
        return args;
    }
}
