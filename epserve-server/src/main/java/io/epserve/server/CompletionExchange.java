package io.epserve.server;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.engine.EngineClosedException;
import io.epserve.engine.FinishReason;
import io.epserve.engine.GenerationRequest;
import io.epserve.engine.RequestHandle;
import io.epserve.engine.Submission;
import io.epserve.engine.TokenListener;
import io.epserve.model.tokenizer.StreamingDecoder;
import io.epserve.model.tokenizer.Tokenizer;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.RejectedExecutionException;

/**
 * One generation request on one connection, from submission to the last byte of its response.
 *
 * <p><b>Threads.</b> The engine calls the {@link TokenListener} methods on its thread; each hops
 * to the connection's event loop, where all of this object's state lives (so the disconnect
 * callback, the submission outcome and the tokens never race). The engine thread only counts the
 * token for the metrics.
 *
 * <p><b>Order.</b> The submission happens on another thread, so the first tokens may reach the
 * event loop before the {@link Submission}: the response headers are written by whichever comes
 * first, and a stop-string match or a disconnect seen before the handle exists is applied when it
 * arrives.
 *
 * <p><b>Text.</b> Tokens are detokenized with a streaming decoder (no broken UTF-8 chars) and go
 * through {@link StopStrings}, which holds back any text that may be the start of a stop string.
 * A matched stop string ends the response at once (finish_reason "stop") and tells the engine to
 * stop at its next step.
 */
final class CompletionExchange implements TokenListener {
    private static final byte[] DATA = "data: ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] END = "\n\n".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] DONE = "data: [DONE]\n\n".getBytes(StandardCharsets.US_ASCII);

    private final HttpHandler owner;
    private final Channel channel;
    private final ObjectMapper json;
    private final ServerMetrics metrics;
    private final ParsedRequest request;
    private final String id;
    private final String model;
    private final long created;
    private final boolean keepAlive;
    private final Tokenizer tokenizer;
    private final StreamingDecoder decoder;
    private final StopStrings stops;
    private final StringBuilder text = new StringBuilder();
    /** With return_token_ids: all generated ids, and those not yet sent in a stream chunk. */
    private final List<Integer> allIds = new ArrayList<>();
    private final List<Integer> unsentIds = new ArrayList<>();
    private final GenerationRequest engineRequest;

    private RequestHandle handle;
    private boolean headersSent;
    private boolean done;
    private boolean cancelPending;
    private boolean finishPending;
    private int tokens;

    CompletionExchange(HttpHandler owner, Channel channel, ObjectMapper json, ServerMetrics metrics, ServedModel servedModel,
                       ParsedRequest request, String id, boolean keepAlive) {
        this.owner = owner;
        this.channel = channel;
        this.json = json;
        this.metrics = metrics;
        this.request = request;
        this.id = id;
        this.model = servedModel.id();
        this.created = System.currentTimeMillis() / 1000;
        this.keepAlive = keepAlive;
        this.tokenizer = servedModel.tokenizer();
        this.decoder = tokenizer.streamingDecoder(request.skipSpecialTokens());
        this.stops = new StopStrings(request.stop());
        this.engineRequest = new GenerationRequest(id, request.prompt(), request.sampling(), request.maxTokens(),
                request.ignoreEos(), servedModel.eosIds());
    }

    String id() {
        return id;
    }

    Channel channel() {
        return channel;
    }

    GenerationRequest engineRequest() {
        return engineRequest;
    }

    /** True once the response has begun (a stream's headers): nothing else may be written before its end. */
    boolean responseStarted() {
        return headersSent;
    }

    // ---------------------------------------------------------------- engine thread

    @Override
    public void onToken(int token) {
        metrics.tokenGenerated();
        onLoop(() -> token(token));
    }

    @Override
    public void onFinish(FinishReason reason, int promptTokens, int generatedTokens) {
        onLoop(() -> finish(reason));
    }

    @Override
    public void onError(RuntimeException error) {
        onLoop(() -> error(error));
    }

    private void onLoop(Runnable r) {
        try {
            channel.eventLoop().execute(r);
        } catch (RejectedExecutionException e) {
            // the server is shutting down: its connections are being closed
        }
    }

    // ---------------------------------------------------------------- event loop

    /** The engine's answer to the submission. */
    void submitted(Submission s) {
        if (!(s instanceof Submission.Accepted) && done) {
            return; // the client left before the engine answered; nothing runs
        }
        switch (s) {
            case Submission.Accepted a -> {
                handle = a.handle();
                if (cancelPending) {
                    handle.cancel();
                } else if (finishPending) {
                    handle.finish();
                }
                if (!done && request.stream()) {
                    sendHeaders();
                }
            }
            case Submission.QueueFull q -> fail(ApiError.busy("the server is busy: " + q.waiting()
                    + " requests are waiting; retry after " + q.retryAfterSeconds() + " s", q.retryAfterSeconds()));
            case Submission.TooLong t -> fail(ApiError.contextTooLong("the request needs " + t.requested()
                    + " tokens of context (prompt + max_tokens) but at most " + t.limit() + " fit", request.endpoint().promptParam));
            case Submission.NotReady n -> fail(ApiError.notReady("the server is not ready: " + n.why()));
        }
    }

    /** The engine refused the request as malformed (it was not submitted). */
    void refused(ApiError e) {
        if (!done) {
            fail(e);
        }
    }

    /** The client went away (connection closed). */
    void clientGone() {
        if (done) {
            return;
        }
        done = true;
        if (handle != null) {
            handle.cancel();
        } else {
            cancelPending = true;
        }
        owner.exchangeEnded(this);
    }

    private void token(int token) {
        if (done) {
            return;
        }
        tokens++;
        if (request.returnTokenIds()) {
            allIds.add(token);
            unsentIds.add(token);
        }
        emit(stops.push(decode(token)));
        if (stops.matched()) {
            if (handle != null) {
                handle.finish();
            } else {
                finishPending = true;
            }
            complete("stop");
        }
    }

    private void finish(FinishReason reason) {
        if (done) {
            return;
        }
        if (reason == FinishReason.CANCELLED) {
            // cancelled by the engine itself (shutdown): there is no more output to give
            fail(ApiError.notReady("the request was cancelled by the server"));
            return;
        }
        emit(stops.push(safeFlush()));
        if (stops.matched()) {
            complete("stop");
            return;
        }
        emit(stops.flush());
        complete(reason == FinishReason.LENGTH ? "length" : "stop");
    }

    private void error(RuntimeException e) {
        if (done) {
            return;
        }
        fail(e instanceof EngineClosedException
                ? ApiError.notReady("the server stopped before the request finished: " + e.getMessage())
                : ApiError.internal("generation failed: " + e.getMessage()));
    }

    private String decode(int token) {
        if (token < 0 || token >= tokenizer.vocabSize()) {
            return ""; // a padded vocab row the tokenizer does not name
        }
        try {
            return decoder.push(token);
        } catch (RuntimeException e) {
            return "";
        }
    }

    private String safeFlush() {
        try {
            return decoder.flush();
        } catch (RuntimeException e) {
            return "";
        }
    }

    // ---------------------------------------------------------------- responses

    private void emit(String piece) {
        if (piece.isEmpty()) {
            return;
        }
        if (!request.stream()) {
            text.append(piece);
            return;
        }
        sendHeaders();
        ObjectNode chunk = chunk();
        ObjectNode choice = (ObjectNode) chunk.get("choices").get(0);
        if (request.endpoint() == Endpoint.CHAT) {
            choice.putObject("delta").put("content", piece);
        } else {
            choice.put("text", piece);
        }
        choice.putNull("finish_reason");
        putUnsentIds(choice);
        writeEvent(chunk);
    }

    private void complete(String finishReason) {
        done = true;
        if (request.stream()) {
            sendHeaders();
            ObjectNode last = chunk();
            ObjectNode choice = (ObjectNode) last.get("choices").get(0);
            if (request.endpoint() == Endpoint.CHAT) {
                choice.putObject("delta");
            } else {
                choice.put("text", "");
            }
            choice.put("finish_reason", finishReason);
            putUnsentIds(choice);
            writeEvent(last);
            if (request.includeUsage()) {
                ObjectNode u = chunk();
                u.putArray("choices");
                u.set("usage", usage());
                writeEvent(u);
            }
            channel.write(new DefaultHttpContent(channel.alloc().buffer(DONE.length).writeBytes(DONE)));
            owner.responseWritten(channel.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT), keepAlive);
        } else {
            ObjectNode r = json.createObjectNode();
            r.put("id", id);
            r.put("object", request.endpoint().object);
            r.put("created", created);
            r.put("model", model);
            ObjectNode choice = r.putArray("choices").addObject();
            choice.put("index", 0);
            if (request.endpoint() == Endpoint.CHAT) {
                ObjectNode m = choice.putObject("message");
                m.put("role", "assistant");
                m.put("content", text.toString());
                m.putNull("refusal");
            } else {
                choice.put("text", text.toString());
            }
            choice.putNull("logprobs");
            choice.put("finish_reason", finishReason);
            if (request.returnTokenIds()) {
                ArrayNode ids = choice.putArray("token_ids");
                allIds.forEach(ids::add);
                ArrayNode pids = r.putArray("prompt_token_ids");
                for (int t : request.prompt()) {
                    pids.add(t);
                }
            }
            r.set("usage", usage());
            metrics.request(request.endpoint(), 200);
            owner.sendJson(channel, HttpResponseStatus.OK, r, keepAlive, null);
        }
        owner.exchangeEnded(this);
    }

    /** Ends the exchange with an error: a JSON error response, or an error event on a started stream. */
    private void fail(ApiError e) {
        done = true;
        if (handle != null) {
            handle.cancel();
        }
        if (!headersSent) {
            metrics.request(request.endpoint(), e.status);
            owner.sendError(channel, e, keepAlive);
        } else {
            writeEvent(e.toJson());
            channel.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT).addListener(ChannelFutureListener.CLOSE);
        }
        owner.exchangeEnded(this);
    }

    private void sendHeaders() {
        if (headersSent) {
            return;
        }
        headersSent = true;
        metrics.request(request.endpoint(), 200);
        HttpResponse r = new DefaultHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK);
        r.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        r.headers().set(HttpHeaderNames.CACHE_CONTROL, HttpHeaderValues.NO_CACHE);
        r.headers().set("X-Request-Id", id);
        HttpUtil.setTransferEncodingChunked(r, true);
        HttpUtil.setKeepAlive(r, keepAlive);
        channel.write(r);
        if (request.endpoint() == Endpoint.CHAT) {
            ObjectNode first = chunk();
            ObjectNode choice = (ObjectNode) first.get("choices").get(0);
            choice.putObject("delta").put("role", "assistant").put("content", "");
            choice.putNull("finish_reason");
            writeEvent(first);
        } else {
            channel.flush();
        }
    }

    private void putUnsentIds(ObjectNode choice) {
        if (request.returnTokenIds()) {
            ArrayNode ids = choice.putArray("token_ids");
            unsentIds.forEach(ids::add);
            unsentIds.clear();
        }
    }

    private ObjectNode chunk() {
        ObjectNode c = json.createObjectNode();
        c.put("id", id);
        c.put("object", request.endpoint() == Endpoint.CHAT ? "chat.completion.chunk" : "text_completion");
        c.put("created", created);
        c.put("model", model);
        ArrayNode choices = c.putArray("choices");
        choices.addObject().put("index", 0).putNull("logprobs");
        if (request.includeUsage()) {
            c.putNull("usage");
        }
        return c;
    }

    private ObjectNode usage() {
        ObjectNode u = json.createObjectNode();
        u.put("prompt_tokens", request.prompt().length);
        u.put("completion_tokens", tokens);
        u.put("total_tokens", request.prompt().length + tokens);
        return u;
    }

    private void writeEvent(ObjectNode event) {
        byte[] body;
        try {
            body = json.writeValueAsBytes(event);
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        ByteBuf buf = channel.alloc().buffer(DATA.length + body.length + END.length);
        buf.writeBytes(DATA).writeBytes(body).writeBytes(END);
        channel.writeAndFlush(new DefaultHttpContent(buf)).addListener(f -> {
            if (!f.isSuccess()) {
                channel.close(); // channelInactive cancels the request
            }
        });
    }
}
