package io.epserve.cli;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code epserve cluster} as a child process, for process tests: starts it, reads what it prints
 * (stdout and stderr merged: the supervisor reports on stderr), and stops it and every worker
 * process it ever named on {@link #close()} (SIGKILL for any the cluster did not stop, a stopped
 * one included), so that nothing outlives the test.
 */
final class ClusterProcess implements AutoCloseable {
    static final Pattern WORKER = Pattern.compile("worker (\\d+): (\\S+) \\(pid (\\d+)\\)");
    static final Pattern WORKERS_LIST = Pattern.compile("^--workers (\\S+)");
    /** A pid the cluster's own reports name: started, restarted or added workers (not the workers' own output). */
    private static final Pattern PID = Pattern.compile("(?:\\(pid|as pid) (\\d+)");
    static final Duration WAIT = Duration.ofSeconds(120);

    private final Process process;
    private final LinkedBlockingQueue<String> lines = new LinkedBlockingQueue<>();
    private final List<String> seen = new ArrayList<>();
    /** Every line read, whether an {@link #await} consumed it or not. */
    private final List<String> all = new ArrayList<>();
    private final Set<Long> pids = ConcurrentHashMap.newKeySet();

    private ClusterProcess(Process process) {
        this.process = process;
        Thread t = new Thread(() -> pump(process.getInputStream()), "cluster-output");
        t.setDaemon(true);
        t.start();
    }

    /** {@code epserve cluster ARGS} in a JVM like this one (its class path), output read by this object. */
    static ClusterProcess start(String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"), "--add-modules",
                "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx256m", "-cp", System.getProperty("java.class.path"),
                Main.class.getName(), "cluster"));
        cmd.addAll(List.of(args));
        return new ClusterProcess(new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null"))).start());
    }

    private void pump(InputStream in) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            for (String l; (l = r.readLine()) != null; ) {
                Matcher m = PID.matcher(l);
                while (!l.startsWith("[worker ") && m.find()) {
                    pids.add(Long.parseLong(m.group(1)));
                }
                synchronized (all) {
                    all.add(l);
                }
                lines.add(l);
            }
        } catch (IOException ignored) {
            // the process ended
        }
    }

    Process process() {
        return process;
    }

    /** The first line from now on matching {@code p}, within {@link #WAIT}; else fails with what the cluster printed. */
    Matcher await(Pattern p) throws InterruptedException {
        long end = System.nanoTime() + WAIT.toNanos();
        while (System.nanoTime() < end) {
            String l = lines.poll(end - System.nanoTime(), TimeUnit.NANOSECONDS);
            if (l == null) {
                break;
            }
            synchronized (seen) {
                seen.add(l);
            }
            Matcher m = p.matcher(l);
            if (m.find()) {
                return m;
            }
        }
        throw new AssertionError("no line matching " + p + " within " + WAIT.toSeconds() + " s; the cluster printed:\n" + output());
    }

    /** How many lines read so far match {@code p}. */
    long count(Pattern p) {
        synchronized (all) {
            return all.stream().filter(l -> p.matcher(l).find()).count();
        }
    }

    /** Everything read so far. */
    String everything() {
        synchronized (all) {
            return String.join("\n", all);
        }
    }

    /** Everything read by {@link #await} so far. */
    String output() {
        synchronized (seen) {
            return String.join("\n", seen);
        }
    }

    /** Waits for the start-up report of {@code n} workers: their pids (by worker index) and the --workers list. */
    Started awaitStarted(int n) throws InterruptedException {
        long[] workerPids = new long[n];
        String[] addresses = new String[n];
        for (int i = 0; i < n; i++) {
            Matcher m = await(WORKER);
            int w = Integer.parseInt(m.group(1));
            workerPids[w] = Long.parseLong(m.group(3));
            addresses[w] = m.group(2);
        }
        return new Started(List.of(addresses), workerPids, await(WORKERS_LIST).group(1));
    }

    record Started(List<String> addresses, long[] pids, String workersList) {}

    /** SIGTERM to the cluster (it stops its workers); then any worker it named that is still there is killed. */
    @Override
    public void close() throws Exception {
        try {
            process.destroy();
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        } finally {
            for (long pid : pids) {
                ProcessHandle h = ProcessHandle.of(pid).orElse(null);
                if (h == null || !h.isAlive()) {
                    continue;
                }
                h.destroyForcibly();
                h.onExit().get(30, TimeUnit.SECONDS);
            }
        }
    }
}
