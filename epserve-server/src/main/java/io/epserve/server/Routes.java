package io.epserve.server;

import io.netty.handler.codec.http.HttpMethod;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The server's endpoints: path, method, who may call it, and what answers it. One table, so that
 * adding an endpoint is adding a line to {@link #standard}, and the handler derives 404, 405 (with
 * {@code Allow}) and 401 from it the same way for every endpoint.
 */
final class Routes {
    /** Who may call an endpoint, and on which listener it is. */
    enum Access {
        /** Liveness and readiness probes: on every listener, never behind a key. */
        PUBLIC,
        /** The API: on the API listener, behind the API keys when there are any. */
        API,
        /**
         * Operators' views ({@code /metrics}, the live view): on the metrics listener without a key
         * when there is one; otherwise on the API listener, behind the API keys.
         */
        OPS
    }

    /** Answers one request; runs on the connection's event loop and must answer exactly once. */
    @FunctionalInterface
    interface Action {
        void handle(HttpHandler.Call call);
    }

    /** An endpoint; {@code prefix} matches every path that starts with {@code path}. */
    record Route(String path, boolean prefix, HttpMethod method, Access access, Action action) {
        static Route get(String path, Access access, Action action) {
            return new Route(path, false, HttpMethod.GET, access, action);
        }

        static Route post(String path, Access access, Action action) {
            return new Route(path, false, HttpMethod.POST, access, action);
        }
    }

    private final Map<String, List<Route>> exact = new LinkedHashMap<>();
    private final List<Route> prefixed = new ArrayList<>();

    Routes(List<Route> routes) {
        for (Route r : routes) {
            if (r.prefix()) {
                prefixed.add(r);
            } else {
                exact.computeIfAbsent(r.path(), p -> new ArrayList<>()).add(r);
            }
        }
    }

    /** The routes of a path (one per method), or an empty list for an unknown path. */
    List<Route> find(String path) {
        List<Route> r = exact.get(path);
        if (r != null) {
            return r;
        }
        List<Route> out = new ArrayList<>();
        for (Route p : prefixed) {
            if (path.startsWith(p.path()) && path.length() > p.path().length()) {
                out.add(p);
            }
        }
        return out;
    }

    /** epserve's endpoints. */
    static Routes standard(EpServer server) {
        return new Routes(List.of(
                Route.get("/health", Access.PUBLIC, HttpHandler::health),
                Route.get("/ready", Access.PUBLIC, HttpHandler::ready),
                Route.get("/metrics", Access.OPS, HttpHandler::metrics),
                Route.get("/", Access.OPS, c -> c.staticFile("index.html")),
                Route.get("/index.html", Access.OPS, c -> c.staticFile("index.html")),
                Route.get("/view.js", Access.OPS, c -> c.staticFile("view.js")),
                Route.get("/view.css", Access.OPS, c -> c.staticFile("view.css")),
                Route.get("/v1/epserve/live", Access.OPS, c -> server.live.subscribe(c.channel())),
                Route.get("/v1/epserve/placement", Access.OPS, PlacementEndpoints::placement),
                Route.get("/v1/epserve/load", Access.OPS, PlacementEndpoints::load),
                Route.get("/v1/epserve/workers", Access.OPS, WorkerEndpoints::workers),
                // changes what the service runs: behind the API key, like the API itself
                Route.post("/v1/epserve/placement/rebalance", Access.API, PlacementEndpoints::rebalance),
                Route.get("/v1/models", Access.API, HttpHandler::models),
                new Route("/v1/models/", true, HttpMethod.GET, Access.API, HttpHandler::model),
                Route.post("/v1/completions", Access.API, c -> c.handler().generate(c, Endpoint.COMPLETIONS)),
                Route.post("/v1/chat/completions", Access.API, c -> c.handler().generate(c, Endpoint.CHAT))));
    }
}
