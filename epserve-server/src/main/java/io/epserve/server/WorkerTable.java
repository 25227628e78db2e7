package io.epserve.server;

import java.util.List;

/**
 * The frontend's table of remote expert workers (its membership), for {@code GET
 * /v1/epserve/workers}, the {@code epserve_worker_state} gauge and the live view. The server
 * does not know where the table comes from: the command that starts it wires one in. Reading it
 * does no I/O.
 */
@FunctionalInterface
public interface WorkerTable {
    /** Every state a worker can be in, in the order the gauge lists them. */
    List<String> STATES = List.of("joining", "serving", "draining", "suspect", "dead");

    /**
     * One worker.
     *
     * @param state      one of {@link #STATES}
     * @param experts    (layer, expert) replicas it holds in the serving epoch
     * @param rttMillis  round trip of its last good check; -1 before any
     * @param load       its share of the routed (token, expert) pairs in the load window, 0..1
     * @param loadMillis how long its last Assign took to map and check its experts; -1 before any
     * @param fromCache  whether those experts came from the converted-experts cache
     * @param mapped     experts its last Assign had to map (0: it held them all already)
     * @param since      ISO-8601 instant it entered its state
     * @param reason     why it is suspect or dead, or empty
     * @param joined     whether it registered itself (epserve worker --join) rather than being listed at start
     */
    record Worker(String address, String host, String state, int capacity, int experts, double rttMillis, double load, long calls,
                  long failures, double loadMillis, boolean fromCache, int mapped, String since, String reason, boolean joined) {}

    /** The serving placement epoch and every worker. */
    record Snapshot(long epoch, List<Worker> workers) {
        public Snapshot {
            workers = List.copyOf(workers);
        }
    }

    Snapshot snapshot();
}
