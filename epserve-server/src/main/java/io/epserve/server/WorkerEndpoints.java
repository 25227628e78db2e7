package io.epserve.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.List;

/**
 * {@code GET /v1/epserve/workers}: the expert workers with their state, experts, round-trip time
 * and load ({@link WorkerTable}). Served in-process experts have no workers to list: an empty
 * list at epoch 0.
 */
final class WorkerEndpoints {
    private WorkerEndpoints() {}

    static void workers(HttpHandler.Call c) {
        if (c.server().serving() == null) {
            c.error(ApiError.notReady("the model is loading"));
            return;
        }
        WorkerTable t = c.server().workerTable();
        c.json(HttpResponseStatus.OK, toJson(c.server().json, t == null ? new WorkerTable.Snapshot(0, List.of()) : t.snapshot()));
    }

    /** The endpoint's body, and the live view's table. */
    static ObjectNode toJson(ObjectMapper json, WorkerTable.Snapshot s) {
        ObjectNode body = json.createObjectNode();
        body.put("epoch", s.epoch());
        ArrayNode ws = body.putArray("workers");
        for (WorkerTable.Worker w : s.workers()) {
            ObjectNode o = ws.addObject();
            o.put("address", w.address());
            o.put("host", w.host());
            o.put("state", w.state());
            o.put("experts", w.experts());
            o.put("rtt_ms", round(w.rttMillis()));
            o.put("load", round(w.load()));
            o.put("calls", w.calls());
            o.put("failures", w.failures());
            o.put("load_ms", round(w.loadMillis()));
            o.put("load_from_cache", w.fromCache());
            o.put("experts_mapped", w.mapped());
            o.put("capacity", w.capacity());
            o.put("joined", w.joined());
            o.put("since", w.since());
            o.put("reason", w.reason());
        }
        return body;
    }

    private static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }
}
