package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The supervisor with stand-in workers: shell processes that print a worker's listening line
 * and then do what the test wants (wait to be killed, crash, leave with 0). A real worker JVM
 * comes back the same way; WorkerDeathTest shows that a dispatcher re-assigns a restarted one.
 */
@Timeout(60)
class WorkerSupervisorTest {
    static final Duration WAIT = Duration.ofSeconds(20);
    static final WorkerSupervisor.Backoff FAST = new WorkerSupervisor.Backoff(Duration.ofMillis(20), Duration.ofMillis(80),
            Duration.ofSeconds(60));

    /** Workers run {@code script} after printing their listening line; the script's $1 is a file counting their starts. */
    static LocalWorkerProcesses shellWorkers(int n, Path dir, String script) {
        LocalWorkerProcesses.CommandLine cmd = (index, listen) -> List.of("sh", "-c",
                "echo x >> \"$1\"; echo '" + WorkerProcess.LISTENING + " 127.0.0.1:" + (40000 + index) + "'; " + script, "worker",
                dir.resolve("starts-" + index).toString());
        return LocalWorkerProcesses.start(n, "127.0.0.1", 0, cmd, null, Duration.ofSeconds(10));
    }

    static WorkerSupervisor.Event next(LinkedBlockingQueue<WorkerSupervisor.Event> q) throws InterruptedException {
        WorkerSupervisor.Event e = q.poll(WAIT.toMillis(), TimeUnit.MILLISECONDS);
        assertThat(e).as("an event within %s", WAIT).isNotNull();
        return e;
    }

    @Test
    void aKilledWorkerIsStartedAgainOnItsAddress(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(2, dir, "exec sleep 600");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            String address = procs.address(1);
            long pid = procs.process(1).pid();
            procs.process(1).destroyForcibly();
            WorkerSupervisor.Event died = next(q);
            assertThat(died).isInstanceOf(WorkerSupervisor.Event.Died.class);
            assertThat(((WorkerSupervisor.Event.Died) died).pid()).isEqualTo(pid);
            assertThat(((WorkerSupervisor.Event.Died) died).exitCode()).isNotZero();
            assertThat(died.worker()).isEqualTo(1);
            WorkerSupervisor.Event back = next(q);
            assertThat(back).isInstanceOf(WorkerSupervisor.Event.Restarted.class);
            WorkerSupervisor.Event.Restarted r = (WorkerSupervisor.Event.Restarted) back;
            assertThat(r.address()).isEqualTo(address);
            assertThat(r.pid()).isNotEqualTo(pid).isEqualTo(procs.process(1).pid());
            assertThat(r.downtime()).isGreaterThanOrEqualTo(FAST.initial());
            assertThat(procs.process(1).isAlive()).isTrue();
            assertThat(procs.process(0).isAlive()).as("the other worker is left alone").isTrue();
            assertThat(Files.readAllLines(dir.resolve("starts-1"))).hasSize(2);
            assertThat(Files.readAllLines(dir.resolve("starts-0"))).hasSize(1);
        }
    }

    @Test
    void aCrashingWorkerIsRestartedWithADoublingBackoff(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(1, dir, "sleep 0.2; exit 3");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            List<Duration> delays = new ArrayList<>();
            while (delays.size() < 4) {
                WorkerSupervisor.Event e = next(q);
                if (e instanceof WorkerSupervisor.Event.Died d) {
                    assertThat(d.exitCode()).isEqualTo(3);
                    delays.add(d.delay());
                }
            }
            assertThat(delays).containsExactly(Duration.ofMillis(20), Duration.ofMillis(40), Duration.ofMillis(80), Duration.ofMillis(80));
        }
    }

    @Test
    void aWorkerThatExitsZeroLeftAndIsNotRestarted(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(1, dir, "sleep 0.2; exit 0");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            assertThat(next(q)).isInstanceOf(WorkerSupervisor.Event.Left.class);
            assertThat(q.poll(300, TimeUnit.MILLISECONDS)).as("nothing more happens").isNull();
            assertThat(Files.readAllLines(dir.resolve("starts-0"))).hasSize(1);
        }
    }

    @Test
    void closedSupervisorsRestartNothing(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(1, dir, "exec sleep 600")) {
            WorkerSupervisor.start(procs, FAST, q::add).close();
            procs.kill(0);
            assertThat(q.poll(300, TimeUnit.MILLISECONDS)).isNull();
            assertThat(procs.process(0).isAlive()).isFalse();
        }
    }

    @Test
    void anAddedWorkerIsSupervisedLikeTheOthers(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(1, dir, "exec sleep 600");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            int added = s.add();
            assertThat(added).isEqualTo(1);
            WorkerSupervisor.Event e = next(q);
            assertThat(e).isInstanceOf(WorkerSupervisor.Event.Added.class);
            assertThat(e.worker()).isEqualTo(1);
            assertThat(((WorkerSupervisor.Event.Added) e).pid()).isEqualTo(procs.process(1).pid());
            assertThat(procs.addresses()).containsExactly(procs.address(0), procs.address(1));
            assertThat(procs.active()).containsExactly(0, 1);
            procs.process(1).destroyForcibly();
            assertThat(next(q)).isInstanceOf(WorkerSupervisor.Event.Died.class);
            assertThat(next(q)).isInstanceOf(WorkerSupervisor.Event.Restarted.class);
            assertThat(Files.readAllLines(dir.resolve("starts-1"))).hasSize(2);
        }
    }

    @Test
    void aRetiredWorkerDrainsOnSigtermAndIsNotRestarted(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        // as a worker does: SIGTERM starts the drain, then it exits 0
        try (LocalWorkerProcesses procs = shellWorkers(2, dir, "trap 'kill $!; exit 0' TERM; sleep 600 & wait");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            s.retire(1, Duration.ofSeconds(10));
            WorkerSupervisor.Event e = next(q);
            assertThat(e).isInstanceOf(WorkerSupervisor.Event.Retired.class);
            assertThat(((WorkerSupervisor.Event.Retired) e).exitCode()).isZero();
            assertThat(e.worker()).isEqualTo(1);
            assertThat(procs.active()).containsExactly(0);
            assertThat(procs.retiring(1)).isTrue();
            assertThat(q.poll(300, TimeUnit.MILLISECONDS)).as("not restarted").isNull();
            assertThat(Files.readAllLines(dir.resolve("starts-1"))).hasSize(1);
            assertThatThrownBy(() -> procs.restart(1)).hasMessageContaining("worker 1 was retired");
            assertThat(procs.process(0).isAlive()).isTrue();
        }
    }

    @Test
    void aWorkerThatDoesNotDrainInTimeIsKilledAndNotRestarted(@TempDir Path dir) throws Exception {
        LinkedBlockingQueue<WorkerSupervisor.Event> q = new LinkedBlockingQueue<>();
        try (LocalWorkerProcesses procs = shellWorkers(1, dir, "trap '' TERM; while true; do sleep 1; done");
             WorkerSupervisor s = WorkerSupervisor.start(procs, FAST, q::add)) {
            s.retire(0, Duration.ofMillis(200));
            WorkerSupervisor.Event e = next(q);
            assertThat(e).isInstanceOf(WorkerSupervisor.Event.Retired.class);
            WorkerSupervisor.Event.Retired r = (WorkerSupervisor.Event.Retired) e;
            assertThat(r.exitCode()).as("killed").isNotZero();
            assertThat(r.drain()).isGreaterThanOrEqualTo(Duration.ofMillis(200));
            assertThat(q.poll(300, TimeUnit.MILLISECONDS)).as("not restarted").isNull();
        }
    }

    @Test
    void backoffDoublesUpToItsMaximumAndIsValidated() {
        WorkerSupervisor.Backoff b = new WorkerSupervisor.Backoff(Duration.ofMillis(250), Duration.ofSeconds(1), Duration.ofSeconds(60));
        assertThat(List.of(b.delay(1), b.delay(2), b.delay(3), b.delay(4), b.delay(40))).containsExactly(Duration.ofMillis(250),
                Duration.ofMillis(500), Duration.ofSeconds(1), Duration.ofSeconds(1), Duration.ofSeconds(1));
        assertThatThrownBy(() -> new WorkerSupervisor.Backoff(Duration.ofSeconds(2), Duration.ofSeconds(1), Duration.ZERO))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("initial <= max");
    }
}
