package io.epserve.bench;

import io.epserve.tensor.DType;
import io.epserve.tensor.KernelPool;
import io.epserve.tensor.Tensor;
import io.epserve.tensor.VectorKernels;
import java.io.BufferedReader;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The floor under {@code epserve bench ep}'s decode ratio on this machine, whatever the
 * transport: the demo model's decode work per token (per layer four hidden × hidden products
 * standing in for attention, then two of the layer's routed experts, BF16; the lm_head at the
 * end), computed once with the experts in this process on the common kernel pool, and once with
 * each token's two experts on two worker processes of this class (one kernel thread each, every
 * expert on both) behind plain blocking TCP: one fixed-size write and one read per call, no
 * framing, no serialization, no event-loop threads. The process layout and the kernels are those
 * of {@code bench ep --policy replicated}; the transport is the least any could do. Rounds of
 * in-process and remote decode alternate in one run; both compute the same numbers (checked
 * bitwise at the end of every round).
 *
 * <pre>
 * java --add-modules jdk.incubator.vector -cp epserve-bench/target/benchmarks.jar io.epserve.bench.EpTransportFloor
 *     [--tokens 64] [--rounds 5] [--warmup 1] [--hidden 1024 --intermediate 2816 --layers 8 --experts 8 --vocab 32000]
 * </pre>
 *
 * A worker ({@code EpTransportFloor worker --hidden ...}) listens on a free loopback port, prints
 * {@code listening PORT}, serves one connection and exits when it closes. The weights are seeded
 * pseudo-random values ({@link BenchWeights}), not a checkpoint: only their sizes matter here.
 */
public final class EpTransportFloor {
    private EpTransportFloor() {}

    /** The model's shapes. */
    record Shape(int hidden, int intermediate, int layers, int experts, int vocab) {
        static Shape from(Map<String, String> o) {
            Shape s = new Shape(intOf(o, "hidden", 1024), intOf(o, "intermediate", 2816), intOf(o, "layers", 8),
                    intOf(o, "experts", 8), intOf(o, "vocab", 32000));
            if (s.hidden < 1 || s.intermediate < 1 || s.layers < 1 || s.experts < 2 || s.vocab < 1) {
                throw new IllegalArgumentException("need --hidden, --intermediate, --layers, --vocab >= 1 and --experts >= 2: " + s);
            }
            return s;
        }

        List<String> args() {
            return List.of("--hidden", "" + hidden, "--intermediate", "" + intermediate, "--layers", "" + layers,
                    "--experts", "" + experts, "--vocab", "" + vocab);
        }
    }

    /** The four products of a layer's stand-in attention, each expert's gate, up and down, the lm_head. */
    static final class Weights {
        final Tensor[] attention;
        final Tensor[][][] experts; // [layer][expert] -> gate, up, down
        final Tensor head;

        Weights(Shape s, Arena arena, boolean withExperts, boolean withDense) {
            // seeds from the tensor's place, so that a worker (experts only) makes the frontend's bytes
            experts = withExperts ? new Tensor[s.layers][s.experts][] : null;
            if (withExperts) {
                for (int l = 0; l < s.layers; l++) {
                    for (int e = 0; e < s.experts; e++) {
                        long seed = 3L * (l * s.experts + e);
                        experts[l][e] = new Tensor[] {BenchWeights.matrix(arena, DType.BF16, s.intermediate, s.hidden, seed),
                            BenchWeights.matrix(arena, DType.BF16, s.intermediate, s.hidden, seed + 1),
                            BenchWeights.matrix(arena, DType.BF16, s.hidden, s.intermediate, seed + 2)};
                    }
                }
            }
            attention = new Tensor[withDense ? s.layers * 4 : 0];
            for (int i = 0; i < attention.length; i++) {
                attention[i] = BenchWeights.matrix(arena, DType.BF16, s.hidden, s.hidden, 1_000_000 + i);
            }
            head = withDense ? BenchWeights.matrix(arena, DType.BF16, s.vocab, s.hidden, 2_000_000) : null;
        }
    }

    /** Scratch of one expert's computation. */
    static final class ExpertScratch {
        final float[] gate;
        final float[] up;

        ExpertScratch(Shape s) {
            gate = new float[s.intermediate];
            up = new float[s.intermediate];
        }

        /** {@code y = down · (silu(gate · x) ⊙ (up · x))}. */
        void run(Tensor[] w, float[] x, float[] y, KernelPool pool) {
            VectorKernels.matmul(x, 0, 1, w[0], gate, 0, pool);
            VectorKernels.matmul(x, 0, 1, w[1], up, 0, pool);
            VectorKernels.siluMul(gate, 0, up, 0, gate, 0, gate.length);
            VectorKernels.matmul(gate, 0, 1, w[2], y, 0, pool);
        }
    }

    /** Where a layer's two experts run. */
    interface Experts {
        /** {@code y0 = expert(layer, e0)(x)}, {@code y1 = expert(layer, e1)(x)}. */
        void compute(int layer, int e0, int e1, float[] x, float[] y0, float[] y1) throws IOException;
    }

    /** Both experts in this process, one after the other, each on the whole kernel pool. */
    static Experts inProcess(Shape s, Weights w, KernelPool pool) {
        ExpertScratch scratch = new ExpertScratch(s);
        return (layer, e0, e1, x, y0, y1) -> {
            scratch.run(w.experts[layer][e0], x, y0, pool);
            scratch.run(w.experts[layer][e1], x, y1, pool);
        };
    }

    /** One expert on each of two workers: both requests go out, then both answers come in. */
    static final class Remote implements Experts, AutoCloseable {
        final Socket[] sockets;
        final OutputStream[] outs;
        final DataInputStream[] ins;
        final ByteBuffer request;
        final ByteBuffer answer;
        final int hidden;
        long calls;
        long computeNanos;
        long roundTripNanos;

        Remote(List<Integer> ports, int hidden) throws IOException {
            this.hidden = hidden;
            sockets = new Socket[ports.size()];
            outs = new OutputStream[ports.size()];
            ins = new DataInputStream[ports.size()];
            for (int w = 0; w < ports.size(); w++) {
                Socket s = new Socket();
                s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), ports.get(w)), 10_000);
                s.setTcpNoDelay(true);
                s.setSoTimeout(60_000); // a worker that stops answering fails the run, it does not hang it
                sockets[w] = s;
                outs[w] = s.getOutputStream();
                ins[w] = new DataInputStream(s.getInputStream());
            }
            request = ByteBuffer.allocate(8 + 4 * hidden).order(ByteOrder.LITTLE_ENDIAN);
            answer = ByteBuffer.allocate(8 + 4 * hidden).order(ByteOrder.LITTLE_ENDIAN);
        }

        @Override
        public void compute(int layer, int e0, int e1, float[] x, float[] y0, float[] y1) throws IOException {
            long t0 = System.nanoTime();
            send(0, layer, e0, x);
            send(1, layer, e1, x);
            receive(0, y0);
            receive(1, y1);
            roundTripNanos += 2 * (System.nanoTime() - t0);
            calls += 2;
        }

        private void send(int w, int layer, int expert, float[] x) throws IOException {
            request.clear();
            request.putInt(layer).putInt(expert);
            request.asFloatBuffer().put(x, 0, hidden);
            outs[w].write(request.array(), 0, request.capacity());
            outs[w].flush();
        }

        private void receive(int w, float[] y) throws IOException {
            try {
                ins[w].readFully(answer.array(), 0, answer.capacity());
            } catch (IOException e) {
                throw new IOException("worker " + w + " (port " + sockets[w].getPort() + ") did not answer: " + e, e);
            }
            answer.clear();
            computeNanos += answer.getLong();
            answer.asFloatBuffer().get(y, 0, hidden);
        }

        @Override
        public void close() throws IOException {
            for (Socket s : sockets) {
                s.close();
            }
        }
    }

    /** One round's figures. */
    record Round(double tokensPerSecond, long checksum) {}

    /**
     * Decodes {@code tokens} tokens: per layer the stand-in attention (four products from the
     * normalized hidden state), then the layer's two routed experts (a fixed pseudo-random pair
     * per token and layer, weights 0.6 / 0.4) added back to the hidden state; the lm_head at the
     * end of each token. The checksum hashes the bits of every expert output and of the final
     * hidden state.
     */
    static Round decode(Shape s, Weights dense, Experts experts, int tokens, KernelPool pool) throws IOException {
        int h = s.hidden;
        float[] state = new float[h];
        float[] x = new float[h];
        float[] t = new float[h];
        float[] y0 = new float[h];
        float[] y1 = new float[h];
        float[] logits = new float[s.vocab];
        SplittableRandom route = new SplittableRandom(7);
        Arrays.fill(state, 1f);
        long sum = 17;
        long start = System.nanoTime();
        for (int token = 0; token < tokens; token++) {
            for (int layer = 0; layer < s.layers; layer++) {
                normalize(state, x);
                for (int p = 0; p < 4; p++) {
                    VectorKernels.matmul(x, 0, 1, dense.attention[layer * 4 + p], t, 0, pool);
                    System.arraycopy(t, 0, x, 0, h);
                }
                for (int i = 0; i < h; i++) {
                    state[i] += x[i];
                }
                normalize(state, x);
                int e0 = route.nextInt(s.experts);
                int e1 = (e0 + 1 + route.nextInt(s.experts - 1)) % s.experts;
                experts.compute(layer, e0, e1, x, y0, y1);
                for (int i = 0; i < h; i++) {
                    state[i] += 0.6f * y0[i] + 0.4f * y1[i];
                    sum = sum * 31 + Float.floatToRawIntBits(y0[i]);
                    sum = sum * 31 + Float.floatToRawIntBits(y1[i]);
                }
            }
            normalize(state, x);
            VectorKernels.matmul(x, 0, 1, dense.head, logits, 0, pool);
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        for (float v : state) {
            sum = sum * 31 + Float.floatToRawIntBits(v);
        }
        return new Round(tokens / seconds, sum);
    }

    /** {@code out = x / rms(x)}: keeps the synthetic activations near 1, away from overflow and subnormals. */
    private static void normalize(float[] x, float[] out) {
        double ss = 0;
        for (float v : x) {
            ss += (double) v * v;
        }
        float scale = (float) (1 / Math.sqrt(ss / x.length + 1e-6));
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] * scale;
        }
    }

    /** Serves one frontend connection: reads {@code [layer, expert, x]}, answers {@code [compute nanos, y]}. */
    static void serve(Shape s, Weights w, ServerSocket server) throws IOException {
        KernelPool pool = KernelPool.common();
        ExpertScratch scratch = new ExpertScratch(s);
        float[] x = new float[s.hidden];
        float[] y = new float[s.hidden];
        ByteBuffer in = ByteBuffer.allocate(8 + 4 * s.hidden).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer out = ByteBuffer.allocate(8 + 4 * s.hidden).order(ByteOrder.LITTLE_ENDIAN);
        try (Socket c = server.accept()) {
            c.setTcpNoDelay(true);
            DataInputStream din = new DataInputStream(c.getInputStream());
            OutputStream dout = c.getOutputStream();
            while (true) {
                int first = din.read();
                if (first < 0) {
                    return; // the frontend is done
                }
                in.array()[0] = (byte) first;
                din.readFully(in.array(), 1, in.capacity() - 1);
                in.clear();
                int layer = in.getInt();
                int expert = in.getInt();
                if (layer < 0 || layer >= s.layers || expert < 0 || expert >= s.experts) {
                    throw new IOException("request for layer " + layer + ", expert " + expert + " outside " + s);
                }
                in.asFloatBuffer().get(x);
                long t0 = System.nanoTime();
                scratch.run(w.experts[layer][expert], x, y, pool);
                out.clear();
                out.putLong(System.nanoTime() - t0);
                out.asFloatBuffer().put(y);
                dout.write(out.array(), 0, out.capacity());
                dout.flush();
            }
        }
    }

    /** A worker process of this class, started with one kernel thread; its port once it listens. */
    static final class WorkerProcess implements AutoCloseable {
        final Process process;
        final int port;

        WorkerProcess(Shape s) throws IOException {
            String java = ProcessHandle.current().info().command()
                    .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            List<String> cmd = new ArrayList<>(List.of(java, "--add-modules", "jdk.incubator.vector", "-Depserve.threads=1",
                    "-cp", System.getProperty("java.class.path"), EpTransportFloor.class.getName(), "worker"));
            cmd.addAll(s.args());
            process = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            String line = r.readLine();
            if (line == null || !line.startsWith("listening ")) {
                process.destroyForcibly();
                throw new IOException("worker process did not start (first line: " + line + ")");
            }
            port = Integer.parseInt(line.substring("listening ".length()).trim());
        }

        @Override
        public void close() {
            try {
                if (!process.waitFor(10, TimeUnit.SECONDS)) {
                    process.destroyForcibly();
                }
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        System.exit(run(args, System.out));
    }

    /** Runs the comparison (or a worker, for {@code worker ...}); 0 when both placements computed the same numbers. */
    static int run(String[] args, PrintStream out) throws IOException {
        boolean worker = args.length > 0 && args[0].equals("worker");
        Map<String, String> o = options(worker ? Arrays.copyOfRange(args, 1, args.length) : args);
        Shape s = Shape.from(o);
        if (worker) {
            try (Arena arena = Arena.ofShared(); ServerSocket server = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
                Weights w = new Weights(s, arena, true, false);
                out.println("listening " + server.getLocalPort());
                out.flush();
                serve(s, w, server);
            }
            return 0;
        }
        int tokens = intOf(o, "tokens", 64);
        int rounds = intOf(o, "rounds", 5);
        int warmup = intOf(o, "warmup", 1);
        if (tokens < 1 || rounds < 1 || warmup < 0) {
            throw new IllegalArgumentException("need --tokens >= 1, --rounds >= 1, --warmup >= 0");
        }
        KernelPool pool = KernelPool.common();
        out.printf(Locale.ROOT, "EP transport floor: hidden %d, intermediate %d, %d layers, %d experts (2 per token), vocab %d; "
                + "%d tokens a round, %d rounds each after %d warm-up; this process %d kernel threads, workers 1%n",
                s.hidden, s.intermediate, s.layers, s.experts, s.vocab, tokens, rounds, warmup, pool.threads());
        try (Arena arena = Arena.ofShared(); WorkerProcess w0 = new WorkerProcess(s); WorkerProcess w1 = new WorkerProcess(s)) {
            Weights local = new Weights(s, arena, true, true);
            Experts here = inProcess(s, local, pool);
            try (Remote remote = new Remote(List.of(w0.port, w1.port), s.hidden)) {
                double[] inProcess = new double[rounds];
                double[] workers = new double[rounds];
                boolean equal = true;
                for (int r = -warmup; r < rounds; r++) {
                    long calls = remote.calls;
                    long compute = remote.computeNanos;
                    long roundTrip = remote.roundTripNanos;
                    Round a = decode(s, local, here, tokens, pool);
                    Round b = decode(s, local, remote, tokens, pool);
                    equal &= a.checksum() == b.checksum();
                    if (r < 0) {
                        continue;
                    }
                    inProcess[r] = a.tokensPerSecond();
                    workers[r] = b.tokensPerSecond();
                    long n = remote.calls - calls;
                    out.printf(Locale.ROOT, "round %d: in process %.1f tokens/s, 2 workers over plain TCP %.1f tokens/s (%.2f); "
                            + "per call %.0f µs computing, %.0f µs on the way%n", r + 1, a.tokensPerSecond(), b.tokensPerSecond(),
                            b.tokensPerSecond() / a.tokensPerSecond(), (remote.computeNanos - compute) / 1e3 / n,
                            ((remote.roundTripNanos - roundTrip) - (remote.computeNanos - compute)) / 1e3 / n);
                }
                double m0 = median(inProcess);
                double m1 = median(workers);
                out.printf(Locale.ROOT, "median: in process %.1f tokens/s, 2 workers over plain TCP %.1f tokens/s; ratio %.2f%n", m0, m1, m1 / m0);
                out.println(equal ? "outputs: equal in every round" : "outputs: DIFFER between in process and workers");
                return equal ? 0 : 1;
            }
        }
    }

    static double median(double[] v) {
        double[] c = v.clone();
        Arrays.sort(c);
        return c.length % 2 == 1 ? c[c.length / 2] : (c[c.length / 2 - 1] + c[c.length / 2]) / 2;
    }

    private static Map<String, String> options(String[] args) {
        Map<String, String> o = new HashMap<>();
        for (int i = 0; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 == args.length) {
                throw new IllegalArgumentException("expected --name value pairs, got '" + args[i] + "'");
            }
            o.put(args[i].substring(2), args[++i]);
        }
        return o;
    }

    private static int intOf(Map<String, String> o, String name, int dflt) {
        String v = o.get(name);
        try {
            return v == null ? dflt : Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--" + name + " must be an integer, got '" + v + "'");
        }
    }
}
