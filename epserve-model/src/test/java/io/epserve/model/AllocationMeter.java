package io.epserve.model;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

/**
 * Java heap bytes allocated by the threads that work for a step: the calling thread and the
 * kernel pool's threads ({@code epserve-kernel-*}), from HotSpot's per-thread allocation counters
 * ({@link com.sun.management.ThreadMXBean#getThreadAllocatedBytes(long)}). Reading a counter
 * allocates nothing, so the meter does not count itself.
 */
final class AllocationMeter {
    private final com.sun.management.ThreadMXBean mx =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private final long[] ids;
    private final String[] names;
    private final long[] start;
    private final long[] delta;

    /** The current thread and every live thread whose name starts with one of the prefixes. */
    AllocationMeter(String... threadPrefixes) {
        if (!mx.isThreadAllocatedMemorySupported()) {
            throw new IllegalStateException("this JVM does not count allocated bytes per thread");
        }
        mx.setThreadAllocatedMemoryEnabled(true);
        List<Thread> threads = new ArrayList<>();
        threads.add(Thread.currentThread());
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            for (String p : threadPrefixes) {
                if (t != Thread.currentThread() && t.getName().startsWith(p)) {
                    threads.add(t);
                }
            }
        }
        ids = new long[threads.size()];
        names = new String[threads.size()];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = threads.get(i).threadId();
            names[i] = threads.get(i).getName();
        }
        start = new long[ids.length];
        delta = new long[ids.length];
    }

    void start() {
        for (int i = ids.length - 1; i >= 0; i--) {
            start[i] = mx.getThreadAllocatedBytes(ids[i]);
        }
    }

    /** Bytes allocated by all the threads since {@link #start()}. */
    long stop() {
        long total = 0;
        for (int i = 0; i < ids.length; i++) {
            delta[i] = mx.getThreadAllocatedBytes(ids[i]) - start[i];
            total += delta[i];
        }
        return total;
    }

    int threads() {
        return ids.length;
    }

    /** Per thread, as measured by the last {@link #stop()}. */
    String describe() {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < ids.length; i++) {
            sb.append(i == 0 ? "" : ", ").append(names[i]).append('=').append(delta[i]);
        }
        return sb.toString();
    }
}
