package io.epserve.tensor;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The one kernel thread pool of the JVM ({@link #common()}), with a parallel-for cheap enough to
 * be called thousands of times per second: decode calls matmul about a hundred times per token,
 * mostly on matrices that take tens of microseconds.
 *
 * <p>Why not ForkJoin: a fork/join round trip costs several microseconds and allocates; here a
 * call publishes one job (a plain field write and one volatile store), the calling thread works
 * on it like the others, and idle workers spin for {@code epserve.spinMicros} (default 100 µs)
 * before they park, so back-to-back kernels find them awake.
 *
 * <pre>
 *   cursor (one AtomicLong) = [ epoch : 32 | next chunk : 32 ]
 *   caller:  write job fields ─▶ cursor := (epoch+1, 0) ─▶ unpark parked workers ─▶ claim chunks ─▶ wait done == nChunks
 *   worker:  sees new epoch ─▶ read job fields ─▶ CAS cursor (e, i) → (e, i+1) ─▶ run chunk i ─▶ done++
 * </pre>
 * A worker only runs a chunk after its CAS succeeded, and the caller only rewrites the job fields
 * after every chunk is done, so a late worker can never run a chunk of a finished job with the
 * fields of the next one. Which thread runs which chunk is not deterministic; kernels therefore
 * compute every output element the same way whatever chunk it falls in.
 *
 * <p>Calls run inline (on the caller, no hand-off) when there is one chunk, when the pool has one
 * thread, when the caller is a worker of this pool (nested parallelism), or when another thread
 * is using the pool at that moment (concurrent callers never queue behind each other).
 *
 * <p>Threads are daemons: the JVM exits without a shutdown. {@link #close()} stops a pool made
 * with {@link #KernelPool(int)}; the common pool ignores it.
 *
 * <p>System properties: {@code epserve.threads} (pool size, default
 * {@code Runtime.availableProcessors()}), {@code epserve.spinMicros} (idle spin before parking).
 */
public final class KernelPool implements AutoCloseable {

    /** Work on the index range {@code [from, to)}. */
    @FunctionalInterface
    public interface Body {
        void run(int from, int to);
    }

    private static final long SPIN_NANOS = 1000L * intProperty("epserve.spinMicros", 100, 0);
    private static final KernelPool COMMON = new KernelPool(
            intProperty("epserve.threads", Runtime.getRuntime().availableProcessors(), 1), true);

    /** The JVM's kernel pool; its size is {@code epserve.threads} or the number of processors. */
    public static KernelPool common() {
        return COMMON;
    }

    private final int threads;
    private final boolean shared;
    private final Worker[] workers;
    /** [ epoch : 32 | chunks : 16 | next chunk : 16 ]. */
    private final AtomicLong cursor = new AtomicLong();
    private static final int MAX_CHUNKS = 0xFFFF;
    private final AtomicInteger done = new AtomicInteger();
    private final AtomicBoolean busy = new AtomicBoolean();
    private volatile boolean closed;

    // The job: written by the caller before it publishes the cursor, read by workers after.
    private Body body;
    private int n;
    private int chunk;
    private int nChunks;
    private volatile Thread waiter;
    private volatile Throwable failure;

    /** A private pool of {@code threads} threads in all (the caller counts as one); close it after use. */
    public KernelPool(int threads) {
        this(threads, false);
    }

    private KernelPool(int threads, boolean shared) {
        if (threads < 1) {
            throw new IllegalArgumentException("kernel pool threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        this.shared = shared;
        this.workers = new Worker[threads - 1];
        for (int i = 0; i < workers.length; i++) {
            workers[i] = new Worker(this, "epserve-kernel-" + (i + 1));
            workers[i].start();
        }
    }

    /** Threads that work on a parallel-for, the caller included. */
    public int threads() {
        return threads;
    }

    /**
     * Runs {@code body} over {@code [0, n)} in chunks of {@code chunk} indices (the last one
     * shorter), on the calling thread and the pool's workers; returns when all are done. The
     * first exception thrown by a chunk is rethrown here once every chunk has finished.
     */
    public void parallelFor(int n, int chunk, Body body) {
        if (n <= 0) {
            return;
        }
        if (chunk < 1) {
            throw new IllegalArgumentException("chunk must be >= 1, got " + chunk);
        }
        int chunks = (int) ((n + (long) chunk - 1) / chunk);
        if (chunks > MAX_CHUNKS) {
            // the chunk count lives in 16 bits of the cursor: fewer, larger chunks
            chunk = (int) ((n + (long) MAX_CHUNKS - 1) / MAX_CHUNKS);
            chunks = (int) ((n + (long) chunk - 1) / chunk);
        }
        if (chunks == 1 || threads == 1 || closed || isOwnWorker() || !busy.compareAndSet(false, true)) {
            body.run(0, n);
            return;
        }
        try {
            this.body = body;
            this.n = n;
            this.chunk = chunk;
            this.nChunks = chunks;
            this.failure = null;
            this.waiter = Thread.currentThread();
            done.set(0);
            int epoch = (int) (cursor.get() >>> 32) + 1;
            cursor.set(((long) epoch << 32) | ((long) chunks << 16)); // publishes the fields above
            for (Worker w : workers) {
                if (w.parked) {
                    LockSupport.unpark(w);
                }
            }
            work(epoch);
            awaitDone(chunks);
            Throwable t = failure;
            if (t != null) {
                failure = null;
                if (t instanceof RuntimeException re) {
                    throw re;
                }
                if (t instanceof Error e) {
                    throw e;
                }
                throw new IllegalStateException(t);
            }
        } finally {
            this.body = null;
            this.waiter = null;
            busy.set(false);
        }
    }

    /** Claims and runs chunks of job {@code epoch} until none is left. */
    private void work(int epoch) {
        while (true) {
            long c = cursor.get();
            if ((int) (c >>> 32) != epoch) {
                return;
            }
            // the bound comes from the same cursor value the CAS checks: fields read before the CAS
            // may already be the next job's (the caller rewrites them once this job is done)
            int i = (int) c & 0xFFFF;
            int count = ((int) c >>> 16) & 0xFFFF;
            if (i >= count) {
                return;
            }
            if (!cursor.compareAndSet(c, c + 1)) {
                continue;
            }
            // chunk i of this epoch is ours and not done: the caller cannot rewrite the job until it is
            Body b = body;
            int total = n;
            int step = chunk;
            try {
                int from = i * step;
                b.run(from, Math.min(total, from + step));
            } catch (Throwable t) {
                if (failure == null) {
                    failure = t;
                }
            }
            if (done.incrementAndGet() == count) {
                Thread w = waiter;
                if (w != null && w != Thread.currentThread()) {
                    LockSupport.unpark(w);
                }
            }
        }
    }

    private void awaitDone(int chunks) {
        long start = 0;
        int spins = 0;
        while (done.get() < chunks) {
            if (++spins < 64) {
                Thread.onSpinWait();
                continue;
            }
            if (start == 0) {
                start = System.nanoTime();
            }
            if (System.nanoTime() - start < SPIN_NANOS) {
                for (int i = 0; i < 32; i++) {
                    Thread.onSpinWait();
                }
            } else {
                LockSupport.parkNanos(this, 50_000);
            }
        }
    }

    private boolean isOwnWorker() {
        return Thread.currentThread() instanceof Worker w && w.pool == this;
    }

    /** Stops the workers of a private pool; the common pool cannot be closed. */
    @Override
    public void close() {
        if (shared || closed) {
            return;
        }
        closed = true;
        for (Worker w : workers) {
            LockSupport.unpark(w);
        }
        for (Worker w : workers) {
            try {
                w.join(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    private static final class Worker extends Thread {
        final KernelPool pool;
        volatile boolean parked;

        Worker(KernelPool pool, String name) {
            super(name);
            this.pool = pool;
            setDaemon(true);
        }

        @Override
        public void run() {
            KernelPool p = pool;
            int seen = (int) (p.cursor.get() >>> 32);
            long idleSince = System.nanoTime();
            while (!p.closed) {
                int epoch = (int) (p.cursor.get() >>> 32);
                if (epoch != seen) {
                    seen = epoch;
                    p.work(epoch);
                    idleSince = System.nanoTime();
                    continue;
                }
                if (System.nanoTime() - idleSince < SPIN_NANOS) {
                    for (int i = 0; i < 16; i++) {
                        Thread.onSpinWait();
                    }
                    continue;
                }
                // Dekker with the caller: it writes the cursor then reads parked; we write parked
                // then read the cursor, so one of us sees the other.
                parked = true;
                if ((int) (p.cursor.get() >>> 32) == seen && !p.closed) {
                    LockSupport.park(p);
                }
                parked = false;
                idleSince = System.nanoTime();
            }
        }
    }

    private static int intProperty(String name, int dflt, int min) {
        String v = System.getProperty(name);
        if (v == null || v.isBlank()) {
            return dflt;
        }
        int x;
        try {
            x = Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("system property " + name + " must be an integer, got '" + v + "'");
        }
        if (x < min) {
            throw new IllegalArgumentException("system property " + name + " must be >= " + min + ", got " + x);
        }
        return x;
    }
}
