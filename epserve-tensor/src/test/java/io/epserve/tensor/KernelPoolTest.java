package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class KernelPoolTest {

    @Test
    void everyIndexRunsOnceOverManyCalls() {
        try (KernelPool pool = new KernelPool(3)) {
            for (int call = 0; call < 5_000; call++) {
                int n = 1 + call % 97;
                int chunk = 1 + call % 7;
                AtomicIntegerArray hits = new AtomicIntegerArray(n);
                pool.parallelFor(n, chunk, (from, to) -> {
                    assertThat(to - from).isBetween(1, chunk);
                    for (int i = from; i < to; i++) {
                        hits.incrementAndGet(i);
                    }
                });
                for (int i = 0; i < n; i++) {
                    assertThat(hits.get(i)).as("call %d index %d", call, i).isEqualTo(1);
                }
            }
        }
    }

    @Test
    void workersShareTheWork() throws Exception {
        try (KernelPool pool = new KernelPool(2)) {
            Set<Thread> seen = ConcurrentHashMap.newKeySet();
            for (int call = 0; call < 200 && seen.size() < 2; call++) {
                pool.parallelFor(64, 1, (from, to) -> {
                    seen.add(Thread.currentThread());
                    long end = System.nanoTime() + 20_000;
                    while (System.nanoTime() < end) {
                        Thread.onSpinWait();
                    }
                });
            }
            assertThat(seen).hasSize(2);
        }
    }

    @Test
    void exceptionsReachTheCaller() {
        try (KernelPool pool = new KernelPool(2)) {
            assertThatThrownBy(() -> pool.parallelFor(10, 1, (from, to) -> {
                if (from == 7) {
                    throw new IllegalStateException("chunk 7");
                }
            })).isInstanceOf(IllegalStateException.class).hasMessage("chunk 7");
            AtomicInteger after = new AtomicInteger();
            pool.parallelFor(10, 1, (from, to) -> after.incrementAndGet());
            assertThat(after.get()).isEqualTo(10);
        }
    }

    @Test
    void nestedAndConcurrentCallsRunInline() throws Exception {
        try (KernelPool pool = new KernelPool(2)) {
            AtomicInteger inner = new AtomicInteger();
            pool.parallelFor(8, 1, (from, to) -> pool.parallelFor(8, 1, (a, b) -> inner.addAndGet(b - a)));
            assertThat(inner.get()).isEqualTo(64);

            int callers = 4;
            CountDownLatch go = new CountDownLatch(1);
            AtomicInteger total = new AtomicInteger();
            Thread[] ts = new Thread[callers];
            for (int t = 0; t < callers; t++) {
                ts[t] = new Thread(() -> {
                    try {
                        go.await();
                    } catch (InterruptedException e) {
                        return;
                    }
                    for (int i = 0; i < 500; i++) {
                        pool.parallelFor(16, 2, (a, b) -> total.addAndGet(b - a));
                    }
                });
                ts[t].start();
            }
            go.countDown();
            for (Thread t : ts) {
                t.join();
            }
            assertThat(total.get()).isEqualTo(callers * 500 * 16);
        }
    }

    @Test
    void commonPoolAndArguments() {
        assertThat(KernelPool.common().threads()).isGreaterThanOrEqualTo(1);
        assertThatThrownBy(() -> new KernelPool(0)).isInstanceOf(IllegalArgumentException.class);
        KernelPool.common().close(); // ignored for the common pool
        AtomicInteger n = new AtomicInteger();
        KernelPool.common().parallelFor(100, 10, (a, b) -> n.addAndGet(b - a));
        assertThat(n.get()).isEqualTo(100);
    }
}
