package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Idle workers back off: after serving a generation, with the frontend's Compute stream still
 * open and its kernel threads (two) started, a worker that gets no work uses next to no CPU —
 * nothing spins or polls while no request comes (a busy-polling thread would burn a whole core).
 * Read from /proc (Linux), in clock ticks.
 */
@Timeout(120)
class IdleWorkerProcessTest {
    static final Duration WINDOW = Duration.ofSeconds(2);

    /** CPU time of a process, in clock ticks (utime + stime of /proc/PID/stat). */
    static long cpuTicks(long pid) throws IOException {
        String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14 and 15, counted after the ") "
    }

    @Test
    void anIdleWorkerUsesNextToNoCpu() throws Exception {
        Assumptions.assumeTrue(Files.isReadable(Path.of("/proc/self/stat")), "needs /proc");
        String name = "mixtral";
        try (LocalWorkerProcesses workers = LocalWorkerProcesses.start(1, "127.0.0.1", 0,
                LocalWorkerProcesses.sameJvm(ModelWorkerMain.class.getName(), List.of("-Depserve.threads=2", "-Xmx256m"),
                        List.of("--model", Fixtures.model(name).toString())), System.err, Duration.ofSeconds(60));
             LoadedModel ref = Fixtures.load(name)) {
            ExpertPlacement p = ExpertPlacement.create(ref.config().sparseLayers(), ref.config().numExperts(), workers.addresses(),
                    ExpertPlacement.Policy.CONTIGUOUS, EquivalenceChecks.EPOCHS.incrementAndGet());
            try (GrpcExpertDispatcher d = new GrpcExpertDispatcher(Fixtures.model(name), p, GrpcExpertDispatcher.Config.defaults()).start()) {
                MoeTransformer t = new MoeTransformer(ref.weights(), d, MoeTransformer.RouterChoice.LEARNED);
                Fixtures.greedy(t, Fixtures.cases(name).get(1).tokens(), 16);
                long pid = workers.process(0).pid();
                // the JIT may still compile what the generation queued: wait (bounded) for a quiet window;
                // a thread that busy-polls never gives one
                long end = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                long ticks;
                double seconds;
                do {
                    long before = cpuTicks(pid);
                    long t0 = System.nanoTime();
                    for (long left; (left = t0 + WINDOW.toNanos() - System.nanoTime()) > 0; ) {
                        LockSupport.parkNanos(left); // the measured idle window itself (park may return early)
                    }
                    ticks = cpuTicks(pid) - before;
                    seconds = (System.nanoTime() - t0) / 1e9;
                } while (ticks >= seconds * 5 && System.nanoTime() < end);
                // 100 ticks per second is one core; below 5 % of one
                assertThat(ticks).as("CPU ticks of an idle worker in %.1f s", seconds).isLessThan((long) (seconds * 5));
            }
        }
    }
}
