package io.epserve.sim;

/**
 * The network between hosts: each host has one link, full duplex, at {@code bitsPerSecond} each
 * way; a message between two hosts is serialised on the sender's link, flies for
 * {@code latencySeconds}, and is received on the receiver's link (cut-through: both links carry
 * it at once when neither is busy). Every message, same host or not, also costs
 * {@code messageSeconds} of software on the way (gRPC, the kernel's socket path, waking threads:
 * on this machine 0.3–0.5 ms a hop, BENCHMARKS.md).
 *
 * @param latencySeconds   one-way latency between two hosts
 * @param bitsPerSecond    link rate per host and direction; {@link Double#POSITIVE_INFINITY} for none
 * @param messageSeconds   software cost of one message
 * @param wireBytesPerValue bytes per activation value on the wire (4 for f32, 2 for bf16)
 */
public record Network(double latencySeconds, double bitsPerSecond, double messageSeconds, int wireBytesPerValue) {

    public Network {
        if (!(latencySeconds >= 0) || !(bitsPerSecond > 0) || !(messageSeconds >= 0) || (wireBytesPerValue != 2 && wireBytesPerValue != 4)) {
            throw new IllegalArgumentException("network needs latency >= 0, rate > 0, message cost >= 0 and 2 or 4 wire bytes per value; got "
                    + latencySeconds + " s, " + bitsPerSecond + " bit/s, " + messageSeconds + " s, " + wireBytesPerValue);
        }
    }

    /** No latency, no rate limit, no software cost. */
    public static Network ideal() {
        return new Network(0, Double.POSITIVE_INFINITY, 0, 4);
    }

    /** Seconds a message of {@code bytes} occupies a link. */
    public double transmitSeconds(long bytes) {
        return bytes * 8.0 / bitsPerSecond;
    }
}
