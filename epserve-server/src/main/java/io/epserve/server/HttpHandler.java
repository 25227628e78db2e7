package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.engine.Submission;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.socket.ChannelInputShutdownEvent;
import io.netty.handler.codec.DecoderResult;
import io.netty.handler.codec.TooLongFrameException;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.QueryStringDecoder;
import io.netty.handler.codec.http.TooLongHttpHeaderException;
import io.netty.handler.codec.http.TooLongHttpLineException;
import io.netty.handler.timeout.IdleStateEvent;
import io.netty.util.ReferenceCountUtil;
import java.util.ArrayDeque;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

/**
 * One connection's requests: routes them through {@link Routes}, answers the small ones on the
 * event loop, and runs generation requests as {@link CompletionExchange}s. Parsing a body (JSON,
 * chat template, tokenizer) happens on the server's bounded parser pool and submitting it to the
 * engine on a virtual thread, so a long prompt never holds up the event loop that serves other
 * connections' streams.
 *
 * <p><b>Order.</b> Requests on a connection are answered one at a time, in the order they came:
 * a pipelined request waits in a queue (and the connection stops reading) until the response
 * before it is complete. Closing the connection cancels the generation in progress; a client
 * that only shuts down its sending side gets its answers, then the connection closes.
 */
final class HttpHandler extends SimpleChannelInboundHandler<FullHttpRequest> {
    private final EpServer server;
    private final EpServer.Listener listener;
    private final ArrayDeque<FullHttpRequest> waiting = new ArrayDeque<>();
    private ChannelHandlerContext ctx;
    /** A request is being answered; the next waits until its response is complete. */
    private boolean busy;
    private boolean draining;
    /** The connection closes after the response in progress (Connection: close, or a fatal error). */
    private boolean closing;
    /** The client shut down its sending side: answer what came, then close. */
    private boolean inputClosed;
    private CompletionExchange active;

    HttpHandler(EpServer server, EpServer.Listener listener) {
        super(false); // requests may wait in the queue; released once answered
        this.server = server;
        this.listener = listener;
    }

    /** One request being answered, and the ways to answer it. */
    record Call(HttpHandler handler, Channel channel, FullHttpRequest request, String path, boolean keepAlive) {
        EpServer server() {
            return handler.server;
        }

        void json(HttpResponseStatus status, JsonNode body) {
            handler.sendJson(channel, status, body, keepAlive, null);
        }

        void error(ApiError e) {
            handler.sendError(channel, e, keepAlive);
        }

        void send(HttpResponseStatus status, String contentType, byte[] body) {
            handler.respond(channel, response(status, contentType, body, keepAlive), keepAlive);
        }

        void staticFile(String name) {
            StaticResources.Resource r = StaticResources.get(name);
            send(HttpResponseStatus.OK, r.contentType(), r.bytes());
        }
    }

    @Override
    public void handlerAdded(ChannelHandlerContext c) {
        this.ctx = c;
    }

    @Override
    protected void channelRead0(ChannelHandlerContext c, FullHttpRequest req) {
        if (closing) {
            req.release();
            return;
        }
        waiting.add(req);
        drain();
    }

    /** Answers waiting requests while none is in progress; reads more only when none waits. */
    private void drain() {
        if (draining) {
            return; // a response completed synchronously inside handle(): the loop below goes on
        }
        draining = true;
        try {
            while (!busy && !closing && !waiting.isEmpty()) {
                FullHttpRequest req = waiting.poll();
                busy = true;
                try {
                    dispatch(req);
                } finally {
                    req.release();
                }
            }
        } finally {
            draining = false;
        }
        Channel ch = ctx.channel();
        if (!busy && inputClosed && !closing && waiting.isEmpty()) {
            closeAfterWrites(ch);
            return;
        }
        ch.config().setAutoRead(waiting.isEmpty());
    }

    /** Closes once what was written is flushed (a plain close would drop a response still in the buffer). */
    private void closeAfterWrites(Channel ch) {
        closing = true;
        ch.writeAndFlush(Unpooled.EMPTY_BUFFER).addListener(ChannelFutureListener.CLOSE);
    }

    private void dispatch(FullHttpRequest req) {
        Channel ch = ctx.channel();
        DecoderResult decoded = req.decoderResult();
        if (decoded.isFailure()) {
            sendError(ch, malformed(decoded.cause()), false);
            return;
        }
        HttpVersion v = req.protocolVersion();
        if (!v.protocolName().equals("HTTP") || v.majorVersion() != 1 || v.minorVersion() > 1) {
            sendError(ch, new ApiError(505, "invalid_request_error", "HTTP version " + v.text()
                    + " is not supported; use HTTP/1.1 or HTTP/1.0", null, "http_version_not_supported", 0), false);
            return;
        }
        boolean keepAlive = HttpUtil.isKeepAlive(req);
        int hosts = req.headers().getAll(HttpHeaderNames.HOST).size();
        if (hosts > 1 || hosts == 0 && v.equals(HttpVersion.HTTP_1_1)) {
            // RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request
            sendError(ch, ApiError.badRequest(hosts == 0 ? "an HTTP/1.1 request needs a Host header"
                    : "the request has " + hosts + " Host headers; one is allowed", null, "malformed_request"), false);
            return;
        }
        String path;
        try {
            path = new QueryStringDecoder(originForm(req.uri())).path();
        } catch (IllegalArgumentException e) {
            sendError(ch, ApiError.badRequest("the request target is malformed: " + e.getMessage(), null), false);
            return;
        }
        HttpMethod method = req.method();
        Call call = new Call(this, ch, req, path, keepAlive);
        List<Routes.Route> routes = server.routes().find(path).stream().filter(r -> visible(r.access())).toList();
        if (routes.isEmpty()) {
            call.error(ApiError.notFound("no such endpoint: " + method + " " + path, null, "unknown_url"));
            return;
        }
        if (needsKey(routes.getFirst().access()) && !server.apiKeys.accepts(req.headers().get(HttpHeaderNames.AUTHORIZATION))) {
            boolean sent = req.headers().contains(HttpHeaderNames.AUTHORIZATION);
            ApiError e = new ApiError(401, "invalid_request_error", sent ? "the API key is not valid"
                    : "this server needs an API key: send 'Authorization: Bearer KEY'", null, "invalid_api_key", 0);
            sendError(ch, e, keepAlive, HttpHeaderNames.WWW_AUTHENTICATE.toString(), "Bearer");
            return;
        }
        for (Routes.Route r : routes) {
            if (r.method().equals(method)) {
                try {
                    r.action().handle(call);
                } catch (RuntimeException e) {
                    // a bug in an endpoint: the client still gets an answer, and the connection a clean end
                    sendError(ch, ApiError.internal("cannot answer " + method + " " + path + ": " + e), false);
                }
                return;
            }
        }
        String allow = routes.stream().map(r -> r.method().name()).distinct().collect(Collectors.joining(", "));
        if (path.startsWith("/v1/") && routes.stream().anyMatch(r -> r.method().equals(HttpMethod.POST))) {
            server.metrics.request(endpointOf(path), 405);
        }
        ApiError e = new ApiError(405, "invalid_request_error", "method " + method + " is not allowed on " + path + "; use " + allow,
                null, "method_not_allowed", 0);
        sendError(ch, e, keepAlive, HttpHeaderNames.ALLOW.toString(), allow);
    }

    /** The path and query of a request target; the absolute form ({@code http://host/path}) is allowed (RFC 9112 §3.2.2). */
    private static String originForm(String target) {
        int scheme = target.indexOf("://");
        if (scheme > 0 && !target.startsWith("/")) {
            int slash = target.indexOf('/', scheme + 3);
            return slash < 0 ? "/" : target.substring(slash);
        }
        return target;
    }

    private static Endpoint endpointOf(String path) {
        return path.equals("/v1/chat/completions") ? Endpoint.CHAT : Endpoint.COMPLETIONS;
    }

    /** The answer to a request the HTTP decoder could not read. */
    private ApiError malformed(Throwable cause) {
        if (cause instanceof TooLongHttpLineException) {
            return new ApiError(414, "invalid_request_error", "the request line is longer than "
                    + server.config().maxHeaderBytes() + " bytes", null, "uri_too_long", 0);
        }
        if (cause instanceof TooLongHttpHeaderException || cause instanceof TooLongFrameException) {
            return new ApiError(431, "invalid_request_error", "the request headers are larger than "
                    + server.config().maxHeaderBytes() + " bytes", null, "headers_too_large", 0);
        }
        String why = cause == null || cause.getMessage() == null ? String.valueOf(cause) : cause.getMessage();
        if (why.length() > 200) {
            why = why.substring(0, 200) + "…";
        }
        return ApiError.badRequest("malformed HTTP request: " + why, null, "malformed_request");
    }

    private boolean visible(Routes.Access access) {
        return switch (access) {
            case PUBLIC -> true;
            case API -> listener == EpServer.Listener.API;
            case OPS -> server.separateMetricsListener() ? listener == EpServer.Listener.OPS : listener == EpServer.Listener.API;
        };
    }

    private boolean needsKey(Routes.Access access) {
        return listener == EpServer.Listener.API && access != Routes.Access.PUBLIC && server.apiKeys.required();
    }

    // ---------------------------------------------------------------- small endpoints

    static void health(Call c) {
        c.json(HttpResponseStatus.OK, c.server().json.createObjectNode().put("status", "ok"));
    }

    static void ready(Call c) {
        EpServer server = c.server();
        String why = server.notReadyReason();
        ObjectNode o = server.json.createObjectNode().put("status", why == null ? "ready" : "not ready");
        if (why != null) {
            o.put("reason", why);
        } else {
            o.put("model", server.serving().model().id());
        }
        c.json(why == null ? HttpResponseStatus.OK : HttpResponseStatus.SERVICE_UNAVAILABLE, o);
    }

    static void metrics(Call c) {
        EpServer server = c.server();
        server.executor.execute(() -> c.send(HttpResponseStatus.OK, server.metrics.contentType(), server.metrics.scrape()));
    }

    static void models(Call c) {
        c.handler().models(c, null);
    }

    static void model(Call c) {
        c.handler().models(c, c.path().substring("/v1/models/".length()));
    }

    private void models(Call c, String one) {
        EpServer.Serving s = server.serving();
        if (s == null) {
            c.error(ApiError.notReady("the model is loading"));
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
                c.error(ApiError.notFound("The model '" + one + "' does not exist", "model", "model_not_found"));
                return;
            }
            c.json(HttpResponseStatus.OK, card);
            return;
        }
        ObjectNode list = server.json.createObjectNode();
        list.put("object", "list");
        list.putArray("data").add(card);
        c.json(HttpResponseStatus.OK, list);
    }

    // ---------------------------------------------------------------- generation

    void generate(Call c, Endpoint endpoint) {
        Channel ch = c.channel();
        boolean keepAlive = c.keepAlive();
        String mime = String.valueOf(HttpUtil.getMimeType(c.request()));
        if (!mime.equalsIgnoreCase(HttpHeaderValues.APPLICATION_JSON.toString())) {
            server.metrics.request(endpoint, 415);
            c.error(new ApiError(415, "invalid_request_error", "the request body must be sent as Content-Type: application/json"
                    + (mime.equals("null") ? " (no Content-Type was given)" : ", not " + mime), null, "unsupported_media_type", 0));
            return;
        }
        String why = server.refuseReason();
        if (why != null) {
            server.metrics.request(endpoint, 503);
            c.error(ApiError.notReady("the server is not ready: " + why));
            return;
        }
        EpServer.Serving s = server.serving();
        byte[] body = ByteBufUtil.getBytes(c.request().content());
        String id = endpoint.idPrefix + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextLong())
                + HexFormat.of().toHexDigits(ThreadLocalRandom.current().nextInt());
        try {
            server.parsers.execute(() -> parse(ch, s, endpoint, body, id, keepAlive));
        } catch (RejectedExecutionException e) {
            ApiError busy = server.parsers.isShutdown() ? ApiError.notReady("the server is shutting down")
                    : ApiError.busy("the server is busy: " + EpServer.PARSE_QUEUE + " requests are waiting to be read", 1);
            server.metrics.request(endpoint, busy.status);
            c.error(busy);
        }
    }

    /** On a parser thread: reads and tokenizes the body, then hands the exchange to the event loop. */
    private void parse(Channel ch, EpServer.Serving s, Endpoint endpoint, byte[] body, String id, boolean keepAlive) {
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
        } catch (RejectedExecutionException e) {
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

    // ---------------------------------------------------------------- connection events

    @Override
    public void userEventTriggered(ChannelHandlerContext c, Object evt) throws Exception {
        boolean idle = !busy && waiting.isEmpty();
        if (evt instanceof ChannelInputShutdownEvent) {
            inputClosed = true;
            if (idle) {
                closeAfterWrites(c.channel());
            } else {
                probeWhileWaiting(c.channel());
            }
        } else if (evt == HeaderTimeout.EVENT) {
            server.metrics.headerTimeout();
            if (idle) {
                sendError(c.channel(), new ApiError(408, "invalid_request_error", "the request headers did not arrive within "
                        + server.config().headerTimeout().toMillis() + " ms", null, "request_timeout", 0), false);
            } else {
                c.close(); // a response is under way: a 408 now would answer the wrong request
            }
        } else if (evt instanceof IdleStateEvent) {
            if (idle) {
                closeAfterWrites(c.channel());
            }
        } else {
            super.userEventTriggered(c, evt);
        }
    }

    /**
     * A client that closed its sending side may be waiting for its answer (a half-close) or gone
     * (a full close): TCP tells them apart only when something is written. While a generation
     * runs with nothing written yet, an interim {@code 102 Processing} response (which HTTP/1.1
     * clients skip) goes out every {@link EpServer.Config#clientCheck()}; to a client that is gone
     * the second write fails, the connection closes, and the generation is cancelled as for any
     * disconnect.
     */
    private void probeWhileWaiting(Channel ch) {
        ch.eventLoop().schedule(() -> {
            CompletionExchange x = active;
            if (!busy || !ch.isActive()) {
                return;
            }
            if (x != null && !x.responseStarted()) {
                ch.writeAndFlush(new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.PROCESSING))
                        .addListener(ChannelFutureListener.CLOSE_ON_FAILURE);
            }
            probeWhileWaiting(ch);
        }, server.config().clientCheck().toNanos(), TimeUnit.NANOSECONDS);
    }

    @Override
    public void channelInactive(ChannelHandlerContext c) throws Exception {
        CompletionExchange x = active;
        if (x != null) {
            x.clientGone();
        }
        waiting.forEach(ReferenceCountUtil::release);
        waiting.clear();
        super.channelInactive(c);
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext c, Throwable cause) {
        // I/O errors (connection reset by peer, ...): the connection is over; channelInactive cancels its request
        c.close();
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
        respond(ch, r, keepAlive);
    }

    void sendError(Channel ch, ApiError e, boolean keepAlive) {
        sendError(ch, e, keepAlive, null, null);
    }

    private void sendError(Channel ch, ApiError e, boolean keepAlive, String header, String value) {
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
        if (header != null) {
            r.headers().set(header, value);
        }
        respond(ch, r, keepAlive);
    }

    private static FullHttpResponse response(HttpResponseStatus status, String contentType, byte[] body, boolean keepAlive) {
        FullHttpResponse r = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, Unpooled.wrappedBuffer(body));
        r.headers().set(HttpHeaderNames.CONTENT_TYPE, contentType);
        r.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
        HttpUtil.setKeepAlive(r, keepAlive);
        return r;
    }

    /** Writes the whole response to the request in progress (from any thread). */
    private void respond(Channel ch, FullHttpResponse r, boolean keepAlive) {
        if (!ch.eventLoop().inEventLoop()) {
            ch.eventLoop().execute(() -> respond(ch, r, keepAlive));
            return;
        }
        responseWritten(ch.writeAndFlush(r), keepAlive);
    }

    /** On the event loop: the last byte of the response in progress is written; the next request may go. */
    void responseWritten(ChannelFuture last, boolean keepAlive) {
        if (!keepAlive) {
            closing = true;
            last.addListener(ChannelFutureListener.CLOSE);
        }
        busy = false;
        drain();
    }
}
