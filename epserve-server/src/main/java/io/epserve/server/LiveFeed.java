package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.group.ChannelGroup;
import io.netty.channel.group.DefaultChannelGroup;
import io.netty.handler.codec.http.DefaultHttpContent;
import io.netty.handler.codec.http.DefaultHttpResponse;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpResponse;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.codec.http.LastHttpContent;
import io.netty.util.concurrent.GlobalEventExecutor;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * {@code GET /v1/epserve/live}: a Server-Sent Events stream per viewer; first a {@code hello}
 * (the model's shape and the history), then a {@code tick} every second. One sampler thread
 * samples {@link LiveStats} and writes the same bytes to every viewer.
 */
final class LiveFeed implements AutoCloseable {
    private final ObjectMapper json;
    private final ChannelGroup viewers = new DefaultChannelGroup("epserve-live", GlobalEventExecutor.INSTANCE);
    private final ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r -> {
        Thread t = new Thread(r, "epserve-live");
        t.setDaemon(true);
        return t;
    });
    private volatile LiveStats stats;

    LiveFeed(ObjectMapper json) {
        this.json = json;
    }

    /** Starts sampling once a model is served. */
    void start(LiveStats s) {
        this.stats = s;
        ticker.scheduleAtFixedRate(this::tick, 1, 1, TimeUnit.SECONDS);
    }

    LiveStats stats() {
        return stats;
    }

    /** On the event loop: the channel becomes a viewer (or, while the model loads, is told to come back). */
    void subscribe(Channel ch) {
        HttpResponse r = new DefaultHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK);
        r.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        r.headers().set(HttpHeaderNames.CACHE_CONTROL, HttpHeaderValues.NO_CACHE);
        HttpUtil.setTransferEncodingChunked(r, true);
        ch.write(r);
        LiveStats s = stats;
        if (s == null) {
            // EventSource reconnects after `retry` ms, by when the model may be loaded
            ch.write(new DefaultHttpContent(Unpooled.copiedBuffer("retry: 1000\nevent: loading\ndata: {}\n\n", StandardCharsets.UTF_8)));
            ch.writeAndFlush(LastHttpContent.EMPTY_LAST_CONTENT).addListener(ChannelFutureListener.CLOSE);
            return;
        }
        ch.writeAndFlush(new DefaultHttpContent(event(s.hello())));
        viewers.add(ch);
    }

    private void tick() {
        try {
            ByteBuf b = event(stats.tick());
            viewers.writeAndFlush(new DefaultHttpContent(b));
        } catch (RuntimeException e) {
            // never let one bad sample stop the ticker
        }
    }

    private ByteBuf event(ObjectNode msg) {
        try {
            byte[] body = json.writeValueAsBytes(msg);
            ByteBuf b = Unpooled.buffer(body.length + 8);
            b.writeBytes("data: ".getBytes(StandardCharsets.US_ASCII)).writeBytes(body).writeBytes("\n\n".getBytes(StandardCharsets.US_ASCII));
            return b;
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    int viewers() {
        return viewers.size();
    }

    @Override
    public void close() {
        ticker.shutdownNow();
        viewers.close();
    }
}
