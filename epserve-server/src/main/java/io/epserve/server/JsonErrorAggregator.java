package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.netty.buffer.Unpooled;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelPipeline;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpMessage;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpVersion;

/**
 * Netty's aggregator, with its refusals (413 for a body over the limit, 417 for an expectation
 * other than {@code 100-continue}) given the API's JSON error body instead of an empty one.
 * Netty keeps deciding when to refuse, when to send {@code 100 Continue} and when to close.
 */
final class JsonErrorAggregator extends HttpObjectAggregator {
    private final ObjectMapper json;
    private final int maxContentLength;

    JsonErrorAggregator(int maxContentLength, ObjectMapper json) {
        super(maxContentLength, true);
        this.json = json;
        this.maxContentLength = maxContentLength;
    }

    @Override
    protected Object newContinueResponse(HttpMessage start, int maxContentLength, ChannelPipeline pipeline) {
        Object r = super.newContinueResponse(start, maxContentLength, pipeline);
        if (r instanceof HttpResponse res && res.status().code() >= 400) {
            return withJson(res.status());
        }
        return r;
    }

    @Override
    protected void handleOversizedMessage(ChannelHandlerContext ctx, HttpMessage oversized) {
        // The rest of the body is still on its way: answer, then close (as Netty does).
        ctx.writeAndFlush(withJson(HttpResponseStatus.REQUEST_ENTITY_TOO_LARGE)).addListener(ChannelFutureListener.CLOSE);
    }

    private FullHttpResponse withJson(HttpResponseStatus status) {
        ApiError e = status.code() == 413
                ? new ApiError(413, "invalid_request_error", "the request body is larger than " + maxContentLength + " bytes",
                null, "request_too_large", 0)
                : new ApiError(status.code(), "invalid_request_error", "only the expectation 100-continue is supported", null,
                "expectation_failed", 0);
        byte[] body;
        try {
            body = json.writeValueAsBytes(e.toJson());
        } catch (JsonProcessingException ex) {
            throw new IllegalStateException(ex);
        }
        FullHttpResponse r = new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, status, Unpooled.wrappedBuffer(body));
        r.headers().set(HttpHeaderNames.CONTENT_TYPE, HttpHeaderValues.APPLICATION_JSON);
        r.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, body.length);
        r.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.CLOSE);
        return r;
    }
}
