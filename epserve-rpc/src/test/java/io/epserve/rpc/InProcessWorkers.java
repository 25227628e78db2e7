package io.epserve.rpc;

import io.epserve.model.ModelExperts;
import io.grpc.inprocess.InProcessServerBuilder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Worker servers on the in-process transport for tests, one set per model (a worker serves the
 * one model it was started with): started on first use, all closed by {@link #close()}.
 */
final class InProcessWorkers implements AutoCloseable {
    private final Map<WorkerModel, List<WorkerServer>> servers = new HashMap<>();

    /** The names (in-process addresses) of at least {@code n} workers serving {@code model}; the first n of them. */
    synchronized List<String> of(WorkerModel model, int n) {
        List<WorkerServer> list = servers.computeIfAbsent(model, m -> new ArrayList<>());
        while (list.size() < n) {
            String name = InProcessServerBuilder.generateName();
            list.add(WorkerServer.builder().serverBuilder(InProcessServerBuilder.forName(name)).name(name).model(model).experts(ModelExperts::open)
                    .build().start());
        }
        return list.subList(0, n).stream().map(WorkerServer::name).toList();
    }

    /** {@code n} workers serving fixture {@code name} as stored. */
    List<String> of(String name, int n) {
        return of(WorkerModel.of(Fixtures.model(name)), n);
    }

    @Override
    public synchronized void close() {
        servers.values().forEach(l -> l.forEach(WorkerServer::close));
        servers.clear();
    }
}
