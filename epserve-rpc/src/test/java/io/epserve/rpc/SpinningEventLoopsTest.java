package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.netty.shaded.io.netty.channel.SelectStrategy;
import io.grpc.netty.shaded.io.netty.channel.EventLoopGroup;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

class SpinningEventLoopsTest {
    private final AtomicLong now = new AtomicLong(1_000_000);
    private final AtomicInteger ready = new AtomicInteger();
    private final AtomicInteger polls = new AtomicInteger();

    private int poll(SpinningEventLoops.Strategy s, boolean hasTasks) throws Exception {
        return s.calculateStrategy(() -> {
            polls.incrementAndGet();
            return ready.get();
        }, hasTasks);
    }

    @Test
    void pollsWithinTheWindowAfterActivityThenBlocks() throws Exception {
        SpinningEventLoops.Strategy s = new SpinningEventLoops.Strategy(1000, now::get);
        now.addAndGet(999);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.CONTINUE); // quiet, but inside the window
        now.addAndGet(1);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.SELECT); // quiet for the whole window: sleep
        ready.set(3);
        assertThat(poll(s, false)).isEqualTo(3); // events: handle them, and the window starts again
        ready.set(0);
        now.addAndGet(500);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.CONTINUE);
        now.addAndGet(500);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.SELECT);
    }

    @Test
    void tasksRestartTheWindowAndNeverBlock() throws Exception {
        SpinningEventLoops.Strategy s = new SpinningEventLoops.Strategy(1000, now::get);
        now.addAndGet(5000);
        assertThat(poll(s, true)).isZero(); // a non-blocking poll, then the tasks run
        assertThat(polls.get()).isEqualTo(1);
        now.addAndGet(10);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.CONTINUE);
    }

    @Test
    void zeroWindowIsTheStockBehaviour() throws Exception {
        SpinningEventLoops.Strategy s = new SpinningEventLoops.Strategy(0, now::get);
        assertThat(poll(s, false)).isEqualTo(SelectStrategy.SELECT);
        assertThat(polls.get()).isZero(); // no extra poll before blocking
    }

    @Test
    void propertyIsValidated() {
        String old = System.getProperty("epserve.rpc.spinMicros");
        try {
            System.setProperty("epserve.rpc.spinMicros", "250");
            assertThat(SpinningEventLoops.spinMicrosFromProperty()).isEqualTo(250);
            System.setProperty("epserve.rpc.spinMicros", "-1");
            assertThatThrownBy(SpinningEventLoops::spinMicrosFromProperty).hasMessageContaining("epserve.rpc.spinMicros must be >= 0");
            System.setProperty("epserve.rpc.spinMicros", "fast");
            assertThatThrownBy(SpinningEventLoops::spinMicrosFromProperty).hasMessageContaining("'fast'");
            System.clearProperty("epserve.rpc.spinMicros");
            assertThat(SpinningEventLoops.spinMicrosFromProperty()).isEqualTo(SpinningEventLoops.DEFAULT_SPIN_MICROS);
        } finally {
            if (old == null) {
                System.clearProperty("epserve.rpc.spinMicros");
            } else {
                System.setProperty("epserve.rpc.spinMicros", old);
            }
        }
    }

    @Test
    void groupRunsTasksAndShutsDown() throws Exception {
        EventLoopGroup g = SpinningEventLoops.group(1, "spin-test", 200);
        try {
            assertThat(g.submit(() -> 42).get(10, TimeUnit.SECONDS)).isEqualTo(42);
        } finally {
            assertThat(g.shutdownGracefully(0, 1, TimeUnit.SECONDS).await(10, TimeUnit.SECONDS)).isTrue();
        }
    }
}
