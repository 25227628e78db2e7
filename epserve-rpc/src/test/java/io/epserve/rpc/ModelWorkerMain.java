package io.epserve.rpc;

import io.epserve.format.CheckpointException;
import io.epserve.model.ModelExperts;
import io.epserve.tensor.DType;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;

/**
 * A worker process for this module's process tests: {@code java -cp ... io.epserve.rpc.ModelWorkerMain
 * --listen HOST:PORT --model DIR [--expert-dtype T] [--auth-secret-file F] [--tls-cert C --tls-key K --tls-ca A]
 * [--lease-timeout S]}, the options of {@code epserve worker} these tests use. It runs
 * {@link WorkerProcess#serve} with the model module's expert stores, as {@code epserve worker}
 * does; it lives here because the main code of this module does not depend on the model module.
 */
public final class ModelWorkerMain {
    private ModelWorkerMain() {}

    public static void main(String[] args) throws InterruptedException {
        String listen = null;
        Path model = null;
        String dtype = null;
        Path secret = null;
        Path cert = null;
        Path key = null;
        Path ca = null;
        long leaseSeconds = WorkerOwnership.DEFAULT_LEASE.toSeconds();
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--listen" -> listen = value(args, ++i, "--listen");
                case "--model" -> model = Path.of(value(args, ++i, "--model"));
                case "--expert-dtype" -> dtype = value(args, ++i, "--expert-dtype");
                case "--auth-secret-file" -> secret = Path.of(value(args, ++i, "--auth-secret-file"));
                case "--tls-cert" -> cert = Path.of(value(args, ++i, "--tls-cert"));
                case "--tls-key" -> key = Path.of(value(args, ++i, "--tls-key"));
                case "--tls-ca" -> ca = Path.of(value(args, ++i, "--tls-ca"));
                case "--lease-timeout" -> leaseSeconds = number(value(args, ++i, "--lease-timeout"), "--lease-timeout");
                default -> usage("unknown argument '" + args[i] + "'");
            }
        }
        if (listen == null || model == null) {
            usage("--listen HOST:PORT and --model DIR are required");
        }
        try {
            WorkerModel m = new WorkerModel(model, dtype == null ? null : DType.parse(dtype), null);
            WorkerSecurity security = new WorkerSecurity(secret == null ? null : WorkerSecret.fromFile(secret, "--auth-secret-file"),
                    TlsFiles.fromOptions(cert, key, ca));
            WorkerProcess.serve(new WorkerProcess.Settings(HostPort.parse(listen, "--listen"), m, security, Duration.ofSeconds(leaseSeconds)),
                    ModelExperts::open, System.out, System.err);
        } catch (IllegalArgumentException | UncheckedIOException | CheckpointException e) {
            System.err.println("epserve worker: error: " + e.getMessage());
            System.exit(2);
        }
    }

    private static long number(String text, String option) {
        try {
            return Long.parseLong(text);
        } catch (NumberFormatException e) {
            usage(option + " must be a whole number of seconds, got '" + text + "'");
            return 0;
        }
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            usage(option + " needs a value");
        }
        return args[i];
    }

    private static void usage(String message) {
        System.err.println("epserve worker: error: " + message);
        System.err.println("usage: ModelWorkerMain --listen HOST:PORT --model DIR [--expert-dtype T] "
                + "[--auth-secret-file F] [--tls-cert C --tls-key K --tls-ca A] [--lease-timeout S]");
        System.exit(2);
    }
}
