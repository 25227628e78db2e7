package io.epserve.server;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.codec.http.HttpRequest;
import io.netty.handler.codec.http.LastHttpContent;
import java.time.Duration;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * The header-read timeout of one connection: from the first byte of a request until its headers
 * are decoded, at most the configured time. Netty's {@code ReadTimeoutHandler} and
 * {@code IdleStateHandler} measure silence, which a client sending one header byte every few
 * seconds never produces; this measures the whole header instead.
 *
 * <p>Two handlers share the state: {@link #bytesSeen()} sits before the HTTP codec and starts the
 * clock when bytes of a new request arrive, {@link #headersSeen()} sits after it and stops the
 * clock when the request's headers come out (and arms it again after the request's last content).
 * When time runs out, {@link #EVENT} travels down the pipeline; the handler that knows whether a
 * response is under way decides between a 408 and a plain close.
 */
final class HeaderTimeout {
    /** The user event fired when a request's headers did not arrive in time. */
    static final Object EVENT = new Object() {
        @Override
        public String toString() {
            return "HeaderTimeout.EVENT";
        }
    };

    private final long limitNanos;
    private boolean awaitingHeaders = true;
    private ScheduledFuture<?> timer;

    HeaderTimeout(Duration limit) {
        this.limitNanos = limit.toNanos();
    }

    Duration limit() {
        return Duration.ofNanos(limitNanos);
    }

    ChannelHandler bytesSeen() {
        return new ChannelInboundHandlerAdapter() {
            @Override
            public void channelRead(ChannelHandlerContext ctx, Object msg) {
                if (msg instanceof ByteBuf b && b.isReadable() && awaitingHeaders && timer == null) {
                    timer = ctx.executor().schedule(() -> expired(ctx), limitNanos, TimeUnit.NANOSECONDS);
                }
                ctx.fireChannelRead(msg);
            }

            @Override
            public void channelInactive(ChannelHandlerContext ctx) {
                cancel();
                ctx.fireChannelInactive();
            }
        };
    }

    ChannelHandler headersSeen() {
        return new ChannelInboundHandlerAdapter() {
            @Override
            public void channelRead(ChannelHandlerContext ctx, Object msg) {
                if (msg instanceof HttpRequest) {
                    awaitingHeaders = false;
                    cancel();
                }
                if (msg instanceof LastHttpContent) {
                    awaitingHeaders = true; // the next bytes start the next request
                }
                ctx.fireChannelRead(msg);
            }
        };
    }

    private void expired(ChannelHandlerContext ctx) {
        timer = null;
        if (awaitingHeaders && ctx.channel().isActive()) {
            ctx.fireUserEventTriggered(EVENT);
        }
    }

    private void cancel() {
        if (timer != null) {
            timer.cancel(false);
            timer = null;
        }
    }
}
