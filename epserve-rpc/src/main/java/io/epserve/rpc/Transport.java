package io.epserve.rpc;

import java.util.Locale;

/**
 * How a frontend hands a step's tokens to its expert workers. gRPC always carries the control
 * calls (Info, Assign, Release, health) and serves workers on other hosts; a worker on the
 * frontend's own host can take its Compute requests over a pair of shared-memory rings instead
 * (expert.proto, AttachRing), which skips the sockets, HTTP/2 framing and event-loop threads of
 * every hand-off.
 */
public enum Transport {
    /** Shared memory with every worker on this host that accepts it, gRPC with the others (default). */
    AUTO,
    /** gRPC with every worker. */
    GRPC,
    /**
     * Shared memory with every worker: a worker that cannot be reached so (another host, no shared
     * folder) fails its Assign, at start and at every later one. A request too large for the rings
     * (a long prefill) still goes on the stream.
     */
    SHM;

    /** From a command-line value (auto, grpc, shm), naming {@code option} when it is none of them. */
    public static Transport parse(String value, String option) {
        if (value != null) {
            for (Transport t : values()) {
                if (t.name().equalsIgnoreCase(value.trim())) {
                    return t;
                }
            }
        }
        throw new IllegalArgumentException(option + " must be auto, grpc or shm, not '" + value + "'");
    }

    /** The command-line spelling. */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
