package io.epserve.sim;

/**
 * The network between hosts: each host has one link, full duplex, at {@code bitsPerSecond} each
 * way; a message between two hosts is serialised on the sender's link, flies for
 * {@code latencySeconds}, and is received on the receiver's link (cut-through: both links carry
 * it at once when neither is busy). Every message, same host or not, also costs software at both
 * ends and a hand-off: {@code messageSeconds + bytes · byteSeconds} of one core on the sender's
 * host (the RPC stack and the socket's system calls per message; encoding, copying and decoding
 * per byte) and as much on the receiver's, where it competes with the kernels for the host's
 * cores; then {@code handoffSeconds} of wall time, no core, before the thread that acts on it
 * runs (a sleeping thread woken, on a virtual machine a halted vCPU too).
 *
 * @param latencySeconds    one-way latency between two hosts
 * @param bitsPerSecond     link rate per host and direction; {@link Double#POSITIVE_INFINITY} for none
 * @param messageSeconds    software cost of one message at each end, seconds of one core
 * @param byteSeconds       software cost per byte of a message at each end, seconds of one core
 * @param handoffSeconds    wall time of one message's hand-off to the thread that acts on it
 * @param wireBytesPerValue bytes per activation value on the wire (4 for f32, 2 for bf16)
 */
public record Network(double latencySeconds, double bitsPerSecond, double messageSeconds, double byteSeconds, double handoffSeconds,
                      int wireBytesPerValue) {

    public Network {
        if (!(latencySeconds >= 0) || !(bitsPerSecond > 0) || !(messageSeconds >= 0) || !(byteSeconds >= 0) || !(handoffSeconds >= 0)
                || (wireBytesPerValue != 2 && wireBytesPerValue != 4)) {
            throw new IllegalArgumentException("network needs latency >= 0, rate > 0, message, byte and hand-off costs >= 0 and 2 or 4 wire "
                    + "bytes per value; got " + latencySeconds + " s, " + bitsPerSecond + " bit/s, " + messageSeconds + " s, " + byteSeconds
                    + " s/byte, " + handoffSeconds + " s, " + wireBytesPerValue);
        }
    }

    /** No latency, no rate limit, no software cost. */
    public static Network ideal() {
        return new Network(0, Double.POSITIVE_INFINITY, 0, 0, 0, 4);
    }

    /** The same network with other per-message costs (what a calibration fits). */
    public Network withMessageCosts(double messageSeconds, double byteSeconds, double handoffSeconds) {
        return new Network(latencySeconds, bitsPerSecond, messageSeconds, byteSeconds, handoffSeconds, wireBytesPerValue);
    }

    /** Seconds of one core a message of {@code bytes} costs at each end. */
    public double softwareSeconds(long bytes) {
        return messageSeconds + bytes * byteSeconds;
    }

    /** Seconds a message of {@code bytes} occupies a link. */
    public double transmitSeconds(long bytes) {
        return bytes * 8.0 / bitsPerSecond;
    }
}
