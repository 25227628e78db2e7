package io.epserve.rpc;

import java.io.PrintStream;
import java.nio.file.Path;

/**
 * An expert worker as a process: {@code java -cp ... io.epserve.rpc.WorkerProcessMain --listen HOST:PORT [--model DIR]}.
 * Prints exactly one line {@value #LISTENING} HOST:PORT (the real port when 0 was asked for) on
 * stdout once serving, then serves until killed; a shutdown hook closes the server. {@code epserve
 * worker} runs the same code ({@link #serve}).
 */
public final class WorkerProcessMain {
    /** The line's prefix; {@link LocalWorkerProcesses} and tests wait for it. */
    public static final String LISTENING = "epserve worker listening on";

    private WorkerProcessMain() {}

    public static void main(String[] args) throws InterruptedException {
        String listen = null;
        Path model = null;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--listen" -> listen = value(args, ++i, "--listen");
                case "--model" -> model = Path.of(value(args, ++i, "--model"));
                default -> usage("unknown argument '" + args[i] + "'");
            }
        }
        if (listen == null) {
            usage("--listen HOST:PORT is required");
        }
        try {
            serve(HostPort.parse(listen, "--listen"), model, System.out);
        } catch (IllegalArgumentException | java.io.UncheckedIOException | io.epserve.format.CheckpointException e) {
            System.err.println("epserve worker: error: " + e.getMessage());
            System.exit(2);
        }
    }

    /** Starts a worker, prints the listening line to {@code out}, and blocks until the server terminates. */
    public static void serve(HostPort listen, Path model, PrintStream out) throws InterruptedException {
        WorkerServer server = start(listen, model, out);
        Runtime.getRuntime().addShutdownHook(new Thread(server::close, "epserve-worker-shutdown"));
        server.awaitTermination();
    }

    /** Starts a worker and prints the listening line; the caller closes it. */
    public static WorkerServer start(HostPort listen, Path model, PrintStream out) {
        WorkerServer server = WorkerServer.builder().host(listen.host()).port(listen.port()).model(model).build().start();
        out.println(LISTENING + " " + new HostPort(listen.host(), server.port()));
        out.flush();
        return server;
    }

    private static String value(String[] args, int i, String option) {
        if (i >= args.length) {
            usage(option + " needs a value");
        }
        return args[i];
    }

    private static void usage(String message) {
        System.err.println("epserve worker: error: " + message);
        System.err.println("usage: WorkerProcessMain --listen HOST:PORT [--model DIR]");
        System.exit(2);
    }
}
