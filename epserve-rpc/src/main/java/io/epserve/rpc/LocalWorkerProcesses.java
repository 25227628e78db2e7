package io.epserve.rpc;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Expert workers as child processes on this host, for local clusters ({@code epserve cluster})
 * and tests: starts them, reads the real port from each one's listening line
 * ({@link WorkerProcess#LISTENING}), and destroys them on {@link #close()}. The children's
 * output (stdout and stderr merged) goes to {@code log} line by line, prefixed with the worker.
 *
 * <p>The set can grow ({@link #add()}) and shrink ({@link #retire}: SIGTERM, after which the
 * worker drains and exits); a worker keeps its index for life, so indices of retired workers
 * are not reused and {@link #active()} lists the workers still meant to run.
 */
public final class LocalWorkerProcesses implements AutoCloseable {

    /** Builds the command line of worker {@code index} that must listen on {@code listen}. */
    @FunctionalInterface
    public interface CommandLine {
        List<String> command(int index, HostPort listen);
    }

    /** JVM flags the engine needs: the incubating Vector API and native access for mapped files. */
    public static final List<String> JVM_FLAGS = List.of("--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED");
    public static final Duration DEFAULT_START_TIMEOUT = Duration.ofSeconds(60);

    private final CommandLine commandLine;
    private final PrintStream log;
    private final Duration startTimeout;
    private final String host;
    private final int basePort;
    /** Only appended to (under this object's lock), read by any thread. */
    private final List<Worker> workers = new CopyOnWriteArrayList<>();
    /** Set once by close(); restarts read it without the lock (each worker has its own). */
    private volatile boolean closed;

    private static final class Worker {
        final int index;
        final HostPort requested;
        // read by other threads (a supervisor restarts workers on its own thread)
        volatile Process process;
        volatile HostPort address;
        /** Told to leave ({@link #retire}): never restarted. */
        volatile boolean retiring;

        Worker(int index, HostPort requested) {
            this.index = index;
            this.requested = requested;
        }
    }

    private LocalWorkerProcesses(CommandLine commandLine, PrintStream log, Duration startTimeout, String host, int basePort) {
        this.commandLine = commandLine;
        this.log = log;
        this.startTimeout = startTimeout;
        this.host = host;
        this.basePort = basePort;
    }

    /**
     * A command line that runs {@code mainClass} in a JVM like this one: the same java binary and
     * class path, {@link #JVM_FLAGS}, this JVM's {@code epserve.*} system properties (tuning such
     * as {@code epserve.spinMicros} or {@code epserve.kernels} reaches the workers too) except those that
     * {@code extraJvmFlags} sets, then {@code extraJvmFlags} (e.g. -Depserve.threads=1), then
     * {@code args} and {@code --listen HOST:PORT}.
     */
    public static CommandLine sameJvm(String mainClass, List<String> extraJvmFlags, List<String> args) {
        String java = ProcessHandle.current().info().command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        String classPath = System.getProperty("java.class.path");
        return (index, listen) -> {
            List<String> cmd = new ArrayList<>();
            cmd.add(java);
            cmd.addAll(JVM_FLAGS);
            cmd.addAll(inheritedProperties(extraJvmFlags));
            cmd.addAll(extraJvmFlags);
            cmd.add("-cp");
            cmd.add(classPath);
            cmd.add(mainClass);
            cmd.addAll(args);
            cmd.add("--listen");
            cmd.add(listen.toString());
            return cmd;
        };
    }

    /** {@code -Dkey=value} for each {@code epserve.*} system property of this JVM that {@code flags} does not set. */
    static List<String> inheritedProperties(List<String> flags) {
        List<String> out = new ArrayList<>();
        for (String key : System.getProperties().stringPropertyNames().stream().sorted().toList()) {
            if (!key.startsWith("epserve.")) {
                continue;
            }
            boolean overridden = false;
            for (String f : flags) {
                if (f.equals("-D" + key) || f.startsWith("-D" + key + "=")) {
                    overridden = true;
                    break;
                }
            }
            if (!overridden) {
                out.add("-D" + key + "=" + System.getProperty(key));
            }
        }
        return out;
    }

    /**
     * Starts {@code n} workers listening on {@code host}, on ports {@code basePort + i} (or free ports
     * when basePort is 0), all at once, and waits until every one has printed its listening line.
     * On any failure the ones started are destroyed and the exception names the worker.
     */
    public static LocalWorkerProcesses start(int n, String host, int basePort, CommandLine commandLine, PrintStream log,
                                             Duration startTimeout) {
        if (n < 1) {
            throw new IllegalArgumentException("need at least one worker, got " + n);
        }
        if (basePort != 0 && (basePort < 1 || basePort + n - 1 > 65535)) {
            throw new IllegalArgumentException("ports " + basePort + ".." + (basePort + n - 1) + " outside [1, 65535]");
        }
        LocalWorkerProcesses p = new LocalWorkerProcesses(commandLine, log, startTimeout, host, basePort);
        List<Worker> started = new ArrayList<>();
        try {
            List<CompletableFuture<HostPort>> ready = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                Worker w = new Worker(i, p.requested(i));
                started.add(w);
                ready.add(p.launch(w, w.requested));
            }
            for (int i = 0; i < n; i++) {
                started.get(i).address = p.await(started.get(i), ready.get(i));
            }
            p.workers.addAll(started);
            return p;
        } catch (RuntimeException e) {
            p.workers.addAll(started);
            p.close();
            throw e;
        }
    }

    private HostPort requested(int index) {
        int port = basePort == 0 ? 0 : basePort + index;
        if (port > 65535) {
            throw new IllegalArgumentException("worker " + index + " would listen on port " + port + " (--base-port " + basePort
                    + " + " + index + "), outside [1, 65535]");
        }
        return new HostPort(host, port);
    }

    /**
     * Starts one more worker (the next index; port {@code basePort + index}, or a free one) and
     * waits until it listens; returns its index. On failure it is destroyed and not added.
     */
    public synchronized int add() {
        if (closed) {
            throw new IllegalStateException("the worker processes are closed: no worker is added");
        }
        Worker w = new Worker(workers.size(), requested(workers.size()));
        try {
            w.address = await(w, launch(w, w.requested));
        } catch (RuntimeException e) {
            Process proc = w.process;
            if (proc != null) {
                proc.destroyForcibly();
            }
            throw e;
        }
        workers.add(w);
        return w.index;
    }

    /**
     * Asks worker i to leave: SIGTERM, on which a worker drains (its frontend places its experts
     * elsewhere and releases it) and exits 0. It is never restarted after this.
     */
    public void retire(int i) {
        Worker w = workers.get(i);
        w.retiring = true;
        Process proc = w.process;
        if (proc != null && proc.isAlive()) {
            proc.destroy();
        }
    }

    /** Whether worker i was told to leave. */
    public boolean retiring(int i) {
        return workers.get(i).retiring;
    }

    /** Indices of the workers not told to leave, in order (some may be dead and about to be restarted). */
    public List<Integer> active() {
        return workers.stream().filter(w -> !w.retiring).map(w -> w.index).toList();
    }

    /** Workers ever started (indices 0 .. size - 1), retired ones included. */
    public int size() {
        return workers.size();
    }

    /** host:port of each worker ever started, in order. */
    public List<String> addresses() {
        return workers.stream().map(w -> w.address.toString()).toList();
    }

    public String address(int i) {
        return workers.get(i).address.toString();
    }

    public Process process(int i) {
        return workers.get(i).process;
    }

    /** Kills worker i at once (SIGKILL) and waits for it to be gone. */
    public void kill(int i) {
        Process proc = workers.get(i).process;
        proc.destroyForcibly();
        try {
            if (!proc.waitFor(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("worker " + i + " still alive 10 s after SIGKILL");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Starts worker i again on the port it had (kills it first) and waits until it listens;
     * returns its address. Workers restart independently: a slow start blocks no other worker's.
     */
    public String restart(int i) {
        Worker w = workers.get(i);
        synchronized (w) {
            if (closed) {
                throw new IllegalStateException("the worker processes are closed: worker " + i + " is not restarted");
            }
            if (w.retiring) {
                throw new IllegalStateException("worker " + i + " was retired: it is not restarted");
            }
            if (w.process != null && w.process.isAlive()) {
                kill(i);
            }
            w.address = await(w, launch(w, w.address));
            if (closed) {
                w.process.destroyForcibly(); // close() ran meanwhile: nothing it started may outlive it
                throw new IllegalStateException("the worker processes were closed while worker " + i + " restarted");
            }
            return w.address.toString();
        }
    }

    private CompletableFuture<HostPort> launch(Worker w, HostPort listen) {
        List<String> cmd = commandLine.command(w.index, listen);
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true).redirectInput(ProcessBuilder.Redirect.PIPE);
        Process proc;
        try {
            proc = pb.start();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot start worker " + w.index + " (" + cmd.getFirst() + "): " + e.getMessage(), e);
        }
        w.process = proc;
        CompletableFuture<HostPort> ready = new CompletableFuture<>();
        Thread reader = new Thread(() -> pump(w.index, proc, ready), "epserve-worker-" + w.index + "-output");
        reader.setDaemon(true);
        reader.start();
        return ready;
    }

    /** Reads the child's output: completes {@code ready} at the listening line, forwards the rest. */
    private void pump(int index, Process proc, CompletableFuture<HostPort> ready) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(proc.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = r.readLine()) != null) {
                if (!ready.isDone() && line.startsWith(WorkerProcess.LISTENING + " ")) {
                    try {
                        ready.complete(HostPort.parse(line.substring(WorkerProcess.LISTENING.length() + 1).trim(), "listening line"));
                    } catch (IllegalArgumentException e) {
                        ready.completeExceptionally(e);
                    }
                } else if (log != null) {
                    log.println("[worker " + index + "] " + line);
                }
            }
        } catch (IOException e) {
            // the process went away; below
        }
        if (!ready.isDone()) {
            String code;
            try {
                code = proc.waitFor(5, TimeUnit.SECONDS) ? String.valueOf(proc.exitValue()) : "unknown";
            } catch (InterruptedException e) {
                code = "unknown";
            }
            ready.completeExceptionally(new IllegalStateException("worker " + index + " exited (code " + code + ") before listening"));
        }
    }

    private HostPort await(Worker w, CompletableFuture<HostPort> ready) {
        try {
            return ready.get(startTimeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new IllegalStateException("worker " + w.index + " did not print its listening line within "
                    + startTimeout.toSeconds() + " s");
        } catch (ExecutionException e) {
            throw e.getCause() instanceof RuntimeException re ? re : new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while starting worker " + w.index);
        }
    }

    /** Destroys every worker (SIGTERM, then SIGKILL after 5 s) and waits for them. Idempotent. */
    @Override
    public synchronized void close() {
        closed = true;
        for (Worker w : workers) {
            if (w.process != null && w.process.isAlive()) {
                w.process.destroy();
            }
        }
        for (Worker w : workers) {
            if (w.process == null) {
                continue;
            }
            try {
                if (!w.process.waitFor(5, TimeUnit.SECONDS)) {
                    w.process.destroyForcibly();
                    w.process.waitFor(5, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                w.process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }
}
