package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.engine.Submission;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import java.util.HexFormat;
import java.util.concurrent.ThreadLocalRandom;
import io.epserve.moe.Rebalancer;

/**
 * One connection's requests: routes them, answers the small ones on the event loop, and runs
 * generation requests as {@link CompletionExchange}s. Parsing a body (JSON, chat template,
 * tokenizer) and submitting it to the engine happen on a virtual thread, so a long prompt never
 * holds up the event loop that serves other connections' streams. A connection carries one
 * generation at a time (clients do not pipeline); closing it cancels that generation.
 */
final class HttpHandler extends SimpleChannelInboundHandler<FullHttpRequest> {
    private final EpServer server;
    private CompletionExchange active;

    HttpHandler(EpServer server) {
        this.server = server;
    }

    @Override
    protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest req) {
        Channel ch = ctx.channel();
        boolean keepAlive = HttpUtil.isKeepAlive(req);
        if (active != null) {
            // a pipelined request while a response streams: not supported, and cannot be answered in order
            ch.close();
            return;
        }
        String path = new QueryStringDecoder(req.uri()).path();
        HttpMethod method = req.method();
        switch (path) {
            case "/health" -> {
                if (allow(ch, method, keepAlive, HttpMethod.GET)) {
                    ObjectNode o = server.json.createObjectNode().put("status", "ok");
                    sendJson(ch, HttpResponseStatus.OK, o, keepAlive, null);
                }
            }
            case "/ready" -> {
                if (allow(ch, method, keepAlive, HttpMethod.GET)) {
                    String why = server.notReadyReason();
                    ObjectNode o = server.json.createObjectNode().put("status", why == null ? "ready" : "not ready");
                    if (why != null) {
                        o.put("reason", why);
                    } else {
                        o.put("model", server.serving().model().id());
                    }
                    sendJson(ch, why == null ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE, o, keepAlive, null);
                }
            }
            case "/metrics" -> {
                if (allow(ch, method, keepAlive, HttpMethod.GET)) {
                    server.executor.execute(() -> {
                        byte[] body = server.metrics.scrape();
                        send(ch, HttpResponseStatus.OK, server.metrics.contentType(), body, keepAlive);
                    });
                }
            }
            case "/", "/index.html" -> staticFile(ch, method, keepAlive, "index.html");
            case "/view.js", "/view.css" -> staticFile(ch, method, keepAlive, path.substring(1));
            case "/v1/epserve/live" -> {
                if (allow(ch, method, keepAlive, HttpMethod.GET)) {
                    server.live.subscribe(ch);
                }
            }
            case "/v1/models" -> {
                if (allow(ch, method, keepAlive, HttpMethod.GET)) {
                    models(ch, keepAlive, null);
                }
            }
            case "/v1/epserve/placement", "/v1/epserve/load", "/v1/epserve/placement/rebalance" -> placement(ch, method, keepAlive, path);
            case "/v1/completions" -> generate(ctx, req, method, keepAlive, Endpoint.COMPLETIONS);
            case "/v1/chat/completions" -> generate(ctx, req, method, keepAlive, Endpoint.CHAT);
            default -> {
                if (path.startsWith("/v1/models/") && allow(ch, method, keepAlive, HttpMethod.GET)) {
                    models(ch, keepAlive, path.substring("/v1/models/".length()));
                } else if (!path.startsWith("/v1/models/")) {
                    sendError(ch, ApiError.notFound("no such endpoint: " + method + " " + path, null, "unknown_url"), keepAlive);
                }
            }
        }
    }

    /**
     * GET /v1/epserve/placement (the live placement with its epoch), GET /v1/epserve/load (routed
     * tokens per layer and expert over the load window), POST /v1/epserve/placement/rebalance (a
     * re-placement now; answers with its outcome once the new epoch serves or the change was
     * abandoned). Off the event loop: the rebalance blocks while workers load.
     */
    private void placement(Channel ch, HttpMethod method, boolean keepAlive, String path) {
        boolean rebalance = path.endsWith("/rebalance");
        if (!allow(ch, method, keepAlive, rebalance ? HttpMethod.POST : HttpMethod.GET)) {
            return;
        }
        Rebalancer r = server.placement();
        if (r == null) {
            sendError(ch, ApiError.notReady("no expert placement is served yet"), keepAlive);
            return;
        }
        server.executor.execute(() -> {
            var window = r.control().routedTokens().window();
            ObjectNode body;
            if (path.equals("/v1/epserve/load")) {
                body = ExpertLoadJson.toJson(server.json, window);
                body.put("window_steps", r.control().routedTokens().windowSteps());
            } else if (rebalance) {
                Rebalancer.Outcome o = r.rebalanceNow("POST " + path);
                body = server.json.createObjectNode();
                body.put("changed", o.changed());
                body.put("epoch", o.epoch());
                body.put("seconds", o.seconds());
                body.put("reason", o.reason());
                var before = body.putArray("balancedness_before");
                for (double v : o.before()) {
                    before.add(v);
                }
                var after = body.putArray("balancedness_after");
                for (double v : o.after()) {
                    after.add(v);
                }
            } else {
                body = ExpertLoadJson.placementJson(server.json, r.control().placement(), window);
                body.put("rebalances", r.rebalances());
            }
            sendJson(ch, HttpResponseStatus.OK, body, keepAlive, null);
        });
    }

    private boolean allow(Channel ch, HttpMethod method, boolean keepAlive, HttpMethod allowed) {
        if (method.equals(allowed)) {
            return true;
        }
        ApiError e = new ApiError(405, "invalid_request_error", "method " + method + " is not allowed here; use " + allowed,
                null, "method_not_allowed", 0);
        sendError(ch, e, keepAlive, allowed.name());
        return false;
    }

    private void models(Channel ch, boolean keepAlive, String one) {
        EpServer.Serving s = server.serving();
        if (s == null) {
            sendError(ch, ApiError.notReady("the model is loading"), keepAlive);
            return;
        }
        ServedModel m = s.model();
        ObjectNode card = server.json.createObjectNode();
        card.put("id", m.id());
        card.put("object", "model");
        card.put("created", m.createdEpochSeconds());
        card.put("owned_by", "epserve");
        card.put("root", m.id());
        card.put("max_model_len", m.maxModelLen());
        card.put("vocab_size", m.vocabSize());
        if (one != null) {
            if (!one.equals(m.id())) {
                sendError(ch, ApiError.notFound("The model '" + one + "' does not exist", "model", "model_not_found"), keepAlive);
                return;
            }
            sendJson(ch, HttpResponseStatus.OK, card, keepAlive, null);
            return;
        }
        ObjectNode list = server.json.createObjectNode();
        list.put("object", "list");
        list.putArray("data").add(card);
        sendJson(ch, HttpResponseStatus.OK, list, keepAlive, null);
    }

    private void staticFile(Channel ch, HttpMethod method, boolean keepAlive, String name) {
        if (allow(ch, method, keepAlive, HttpMethod.GET)) {
            StaticResources.Resource r = StaticResources.get(name);
            send(ch, HttpResponseStatus.OK, r.contentType(), r.bytes(), keepAlive);
        }
    }

    // ---------------------------------------------------------------- generation

    private void generate(ChannelHandlerContext ctx, FullHttpRequest req, HttpMethod method, boolean keepAlive, Endpoint endpoint) {
        Channel ch = ctx.channel();
        if (!method.equals(HttpMethod.POST)) {
            ApiError e = new ApiError(405, "invalid_request_error", "use POST for " + req.uri(), null, "method_not_allowed", 0);
            server.metrics.request(endpoint, 405);
            sendError(ch, e, keepAlive, "POST");
            return;
        }
        String why = server.notReadyReason();
        if (why != null) {
            server.metrics.request(endpoint, 503);
            sendError(ch, ApiError.notReady("the server is not ready: " + why), keepAlive);
            return;
        }
        EpServer.Serving s = server.serving();
        byte[] body = ByteBufUtil.getBytes(req.content());
        String id = endpoint.idPrefix + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong())
                + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt());
        server.executor.execute(() -> {
            CompletionExchange x;
            try {
                ParsedRequest p = s.parser().parse(endpoint, body);
                x = new CompletionExchange(this, ch, server.json, server.metrics, s.model(), p, id, keepAlive);
            } catch (RuntimeException | Error e) {
                // an Error too: the client must get an answer (500) rather than wait forever
                ApiError err = e instanceof ApiError a ? a
                        : e instanceof IllegalArgumentException ? ApiError.badRequest(e.getMessage(), null)
                        : ApiError.internal("cannot handle the request: " + e);
                ch.eventLoop().execute(() -> {
                    server.metrics.request(endpoint, err.status);
                    sendError(ch, err, keepAlive);
                });
                if (e instanceof VirtualMachineError vme) {
                    throw vme;
                }
                return;
            }
            // Registered on the loop before submitting, so a disconnect from now on is seen by the exchange.
            ch.eventLoop().execute(() -> begin(x));
        });
    }

    /** On the event loop: the exchange becomes the connection's generation, then is submitted off the loop. */
    private void begin(CompletionExchange x) {
        Channel ch = x.channel();
        active = x;
        server.exchangeStarted();
        if (!ch.isActive()) {
            x.clientGone(); // closed while the body was parsed: nothing was submitted
            return;
        }
        try {
            server.executor.execute(() -> submit(ch, x));
        } catch (java.util.concurrent.RejectedExecutionException e) {
            x.refused(ApiError.notReady("the server is shutting down"));
        }
    }

    /** Off the event loop: the engine's submit takes its lock, which a step may hold for a moment. */
    private void submit(Channel ch, CompletionExchange x) {
        Submission sub;
        try {
            sub = server.serving().engine().submit(x.engineRequest(), x);
        } catch (IllegalArgumentException e) {
            ch.eventLoop().execute(() -> x.refused(ApiError.badRequest(e.getMessage(), null)));
            return;
        } catch (RuntimeException e) {
            sub = new Submission.NotReady(e.getMessage());
        }
        Submission result = sub;
        ch.eventLoop().execute(() -> x.submitted(result));
    }

    /** On the event loop: the exchange's response is complete (or its client gone). */
    void exchangeEnded(CompletionExchange x) {
        if (active == x) {
            active = null;
            server.exchangeEnded();
        }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) throws Exception {
        CompletionExchange x = active;
        if (x != null) {
            x.clientGone();
        }
        super.channelInactive(ctx);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        // I/O errors (connection reset by peer, ...): the connection is over; channelInactive cancels its request
        ctx.close();
    }

    // ---------------------------------------------------------------- writing

    void sendJson(Channel ch, HttpResponseStatus status, JsonNode body, boolean keepAlive, String allow) {
        byte[] bytes;
        try {
            bytes = server.json.writeValueAsBytes(body);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        FullHttpResponse r = response(status, "application/json", bytes, keepAlive);
        if (allow != null) {
            r.headers().set(HttpHeaderNames.ALLOW, allow);
        }
        write(ch, r, keepAlive);
    }

    void sendError(Channel ch, ApiError e, boolean keepAlive) {
        sendError(ch, e, keepAlive, null);
    }

    private void sendError(Channel ch, ApiError e, boolean keepAlive, String allow) {
        byte[] bytes;
        try {
            bytes = server.json.writeValueAsBytes(e.toJson());
        } catch (JsonProcessingException ex) {
            throw new IllegalStateException(ex);
        }
        FullHttpResponse r = response(HttpResponseStatus.valueOf(e.status), "application/json", bytes, keepAlive);
        if (e.retryAfterSeconds > 0) {
            r.headers().set(HttpHeaderNames.RETRY_AFTER, Integer.toString(e.retryAfterSeconds));
        }
        if (allow != null) {
            r.headers().set(HttpHeaderNames.ALLOW, allow);
        }
        write(ch, r, keepAlive);
    }

    private void send(Channel ch, HttpResponseStatus status, String contentType, byte[] body, boolean keepAlive) {
        write(ch, response(status, contentType, body, keepAlive), keepAlive);
    }

    private static FullHttpResponse response(HttpResponseStatus status, String contentType, byte[] body, boolean keepAlive) {
        FullHttpResponse r = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, Unpooled.wrappedBuffer(body));
        r.headers().set(HttpHeaderNames.CONTENT_TYPE, contentType);
        r.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
        HttpUtil.setKeepAlive(r, keepAlive);
        return r;
    }

    private static void write(Channel ch, FullHttpResponse r, boolean keepAlive) {
        var f = ch.writeAndFlush(r);
        if (!keepAlive) {
            f.addListener(ChannelFutureListener.CLOSE);
        }
    }
}
