package io.epserve.rpc;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A snapshot of a gRPC dispatcher's counters since it was created (DESIGN.md §1 metrics,
 * item 7): per worker the calls, bytes each way, the workers' own compute time and the round trip
 * seen by the frontend; per (layer, expert) the tokens routed there.
 *
 * @param tokensRouted [layer][expert] tokens routed, summed over dispatches (dense layers: empty rows)
 */
public record DispatchStats(long dispatches, List<Worker> workers, long[][] tokensRouted) {

    /**
     * One worker's counters.
     *
     * @param computeNanos     sum of the compute times the worker reported
     * @param roundTripNanos   sum over calls of send → answer at the frontend (network + queueing + compute)
     * @param failures         dispatches this worker failed (WorkerException)
     */
    public record Worker(String address, long calls, long bytesSent, long bytesReceived, long computeNanos,
                         long roundTripNanos, long failures) {
        /** Round trip minus compute, per call: what the wire and the two stacks cost. */
        public double meanOverheadMicros() {
            return calls == 0 ? 0 : (roundTripNanos - computeNanos) / 1e3 / calls;
        }
    }

    public DispatchStats {
        workers = List.copyOf(workers);
    }

    /** Tokens routed to an expert of a layer over all dispatches. */
    public long tokens(int layer, int expert) {
        return tokensRouted[layer].length == 0 ? 0 : tokensRouted[layer][expert];
    }

    /** Printable lines: one per worker, then one per sparse layer with its tokens per expert. */
    public List<String> describe() {
        List<String> lines = new ArrayList<>();
        lines.add("dispatch: " + dispatches + " MoE layer dispatches");
        for (Worker w : workers) {
            lines.add(String.format(Locale.ROOT,
                    "  worker %s: %d calls, %.2f MiB sent, %.2f MiB received, compute %.1f ms, round trip %.1f ms, %.0f µs/call overhead, %d failures",
                    w.address(), w.calls(), w.bytesSent() / 1048576.0, w.bytesReceived() / 1048576.0, w.computeNanos() / 1e6,
                    w.roundTripNanos() / 1e6, w.meanOverheadMicros(), w.failures()));
        }
        for (int l = 0; l < tokensRouted.length; l++) {
            if (tokensRouted[l].length == 0) {
                continue;
            }
            StringBuilder sb = new StringBuilder("  layer ").append(l).append(" tokens per expert:");
            for (long t : tokensRouted[l]) {
                sb.append(' ').append(t);
            }
            lines.add(sb.toString());
        }
        return lines;
    }
}
