package io.epserve.rpc;

import io.grpc.netty.shaded.io.netty.channel.Channel;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.IoHandlerFactory;
import io.grpc.netty.shaded.io.netty.channel.MultiThreadIoEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.SelectStrategy;
import io.grpc.netty.shaded.io.netty.channel.SelectStrategyFactory;
import io.grpc.netty.shaded.io.netty.channel.ServerChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.Epoll;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollIoHandler;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.epoll.EpollSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.nio.NioIoHandler;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioServerSocketChannel;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioSocketChannel;
import io.grpc.netty.shaded.io.netty.util.IntSupplier;
import io.grpc.netty.shaded.io.netty.util.concurrent.DefaultThreadFactory;
import java.nio.channels.spi.SelectorProvider;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * Netty event loops that poll instead of sleeping for a while after each event.
 *
 * <p>Every MoE layer of a decode step is a round trip frontend → worker → frontend, a few
 * milliseconds apart. With the stock event loops each hop parks a thread in {@code epoll_wait}
 * and wakes it again; on the small virtual machines we measure on (2 vCPUs, a vCPU halts when
 * its threads sleep) a wake-up took 200–350 µs at the median and several ms at the 90th
 * percentile, and one layer's dispatch crosses four of them. So for {@code spinMicros} after the
 * last event (or task) a loop keeps polling with a non-blocking {@code epoll_wait}, yielding
 * the CPU between polls: a runnable thread (the worker's own compute, the frontend's attention)
 * takes the CPU at once, and the loop notices the next message within microseconds. After a
 * quiet {@code spinMicros} it blocks as usual, so an idle worker costs no CPU.
 *
 * <p>{@code spinMicros} = 0 gives the stock behaviour. Epoll where Netty's native transport
 * loads (Linux), NIO otherwise.
 */
final class SpinningEventLoops {
    private SpinningEventLoops() {}

    /** Default spin window: a few layers' worth of a decode step on the demo model. */
    static final int DEFAULT_SPIN_MICROS = 3000;

    /** The spin window from system property {@code epserve.rpc.spinMicros}, else the default. */
    static int spinMicrosFromProperty() {
        String v = System.getProperty("epserve.rpc.spinMicros");
        if (v == null || v.isBlank()) {
            return DEFAULT_SPIN_MICROS;
        }
        try {
            int us = Integer.parseInt(v.trim());
            if (us < 0) {
                throw new IllegalArgumentException("epserve.rpc.spinMicros must be >= 0, got " + us);
            }
            return us;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("epserve.rpc.spinMicros must be an integer number of microseconds, got '" + v + "'");
        }
    }

    static boolean epoll() {
        return Epoll.isAvailable();
    }

    /** A group of {@code threads} event loops (daemon threads named {@code name}) that spin {@code spinMicros} after activity. */
    static EventLoopGroup group(int threads, String name, int spinMicros) {
        SelectStrategyFactory strategy = () -> new Strategy(TimeUnit.MICROSECONDS.toNanos(spinMicros));
        IoHandlerFactory io = epoll() ? EpollIoHandler.newFactory(0, strategy)
                : NioIoHandler.newFactory(SelectorProvider.provider(), strategy);
        return new MultiThreadIoEventLoopGroup(threads, new DefaultThreadFactory(name, true), io);
    }

    private static volatile EventLoopGroup client;

    /**
     * The frontends' transport: one event loop (daemon thread) shared by every channel of this
     * JVM, created at first use and spinning {@code epserve.rpc.spinMicros}. One thread is enough:
     * it only decodes answers and completes futures, and fewer spinning threads leave more CPU to
     * the compute.
     */
    static EventLoopGroup clientGroup() {
        EventLoopGroup g = client;
        if (g == null) {
            synchronized (SpinningEventLoops.class) {
                g = client;
                if (g == null) {
                    g = group(1, "epserve-rpc-client", spinMicrosFromProperty());
                    client = g;
                }
            }
        }
        return g;
    }

    static Class<? extends Channel> clientChannel() {
        return epoll() ? EpollSocketChannel.class : NioSocketChannel.class;
    }

    static Class<? extends ServerChannel> serverChannel() {
        return epoll() ? EpollServerSocketChannel.class : NioServerSocketChannel.class;
    }

    /**
     * Poll (non-blocking) while there was activity in the last {@code spinNanos}, yielding in
     * between; block once it has been quiet that long. One per event loop (not thread-safe).
     */
    static final class Strategy implements SelectStrategy {
        private final long spinNanos;
        private final LongSupplier clock;
        private long lastActive;

        Strategy(long spinNanos) {
            this(spinNanos, System::nanoTime);
        }

        Strategy(long spinNanos, LongSupplier clock) {
            this.spinNanos = spinNanos;
            this.clock = clock;
            this.lastActive = clock.getAsLong();
        }

        @Override
        public int calculateStrategy(IntSupplier selectNow, boolean hasTasks) throws Exception {
            if (hasTasks) {
                lastActive = clock.getAsLong();
                return selectNow.get();
            }
            if (spinNanos == 0) {
                return SELECT;
            }
            int ready = selectNow.get();
            long now = clock.getAsLong();
            if (ready > 0) {
                lastActive = now;
                return ready;
            }
            if (now - lastActive < spinNanos) {
                Thread.yield();
                return CONTINUE;
            }
            return SELECT;
        }
    }
}
