package io.epserve.cli;

import io.epserve.format.gguf.GgufModel;
import io.epserve.rpc.HostPort;
import io.epserve.rpc.WorkerProcessMain;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code epserve worker}: an expert worker process (DESIGN.md §1). */
@Command(name = "worker", mixinStandardHelpOptions = true,
        description = {"Run an expert worker: a gRPC server (epserve.expert.v1.ExpertService and the",
                "standard health service) that holds the routed experts a frontend assigns to it, maps",
                "only their tensors, and answers the frontend's per-layer compute calls. Prints one line",
                "'epserve worker listening on HOST:PORT' (the real port when 0 was asked for) once",
                "serving, then serves until killed. Kernel threads: -Depserve.threads=N on the JVM."})
final class WorkerCommand implements Callable<Integer> {

    @Option(names = "--listen", required = true, paramLabel = "HOST:PORT",
            description = "Address to listen on, e.g. 127.0.0.1:7071 or 0.0.0.0:7071; port 0 picks a free port.")
    String listen;

    @Option(names = "--model", paramLabel = "DIR|FILE.gguf",
            description = "Model directory to open at start (checks it early; nothing is mapped until the frontend's Assign, "
                    + "which names the model directory anyway).")
    Path model;

    @Override
    public Integer call() throws InterruptedException {
        HostPort address = HostPort.parse(listen, "--listen");
        if (model != null && !Files.isDirectory(model) && !GgufModel.isGguf(model)) {
            throw new Main.UsageError("--model " + model + ": no such directory or .gguf file");
        }
        WorkerProcessMain.serve(address, model, System.out);
        return 0;
    }
}
