package io.epserve.rpc.shm;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

/**
 * A single-producer, single-consumer ring of variable-length messages in shared memory (one
 * direction of a {@link RingFile}); the producer and the consumer may be different processes.
 * Positions only grow (64-bit byte counts); a position's place in the data area is
 * {@code position mod capacity}. A message never wraps: when it does not fit before the end of
 * the data area, a padding record fills the rest and the message starts at 0 (Agrona's
 * {@code OneToOneRingBuffer} does the same; this ring lives on a {@link MemorySegment} so that it
 * needs no {@code sun.misc.Unsafe}, which JDK 25 deprecates for removal).
 * <pre>
 *   control block (256 bytes, in the file header)       data area (capacity C bytes, a power of two)
 *   +0    i64 head      bytes consumed (consumer)       ┌────────┬──────┬─────────────┬────────┬─────────┐
 *   +64   i64 tail      bytes published (producer)      │ len    │ type │ payload     │ pad to │ next …  │
 *   +128  i32 doorbell  +1 per publish (futex word)     │ i32    │ i32  │ len bytes   │ 8 bytes│         │
 *   +132  i32 sleeping  1 while the consumer sleeps     └────────┴──────┴─────────────┴────────┴─────────┘
 *   (head and tail on separate cache lines)             type 1 = message, 2 = padding to the end of the area
 * </pre>
 * The consumer trusts nothing it reads: positions and lengths that cannot be right make
 * {@link #poll} throw {@link RingCorruptException}, and every access is bounds-checked by the
 * segment, so a broken or hostile peer can end the ring, never read or write outside it.
 *
 * <p>Waking ({@link #await}): the consumer spins for a short while, then announces that it
 * sleeps and sleeps on the doorbell ({@link Futex}); the producer publishes, rings the doorbell
 * and wakes the consumer only when it announced sleep. All four accesses are volatile, so one of
 * the two always sees the other's store (no lost wake-up), and the futex refuses to sleep when
 * the doorbell moved since the consumer read it.
 */
public final class ShmRing {
    /** Bytes of one control block. */
    public static final int CONTROL_BYTES = 256;
    static final int RECORD_HEADER = 8;
    static final int TYPE_MESSAGE = 1;
    static final int TYPE_PADDING = 2;
    private static final long HEAD = 0;
    private static final long TAIL = 64;
    private static final long DOORBELL = 128;
    private static final long SLEEPING = 132;
    /** The longest single sleep: waits re-check their stop condition at least this often. */
    private static final long MAX_SLEEP_NANOS = 100_000_000L;

    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle LONG = I64.varHandle();
    private static final VarHandle INT = I32.varHandle();

    private final MemorySegment control;
    private final MemorySegment data;
    private final MemorySegment doorbell;
    private final int capacity;
    private final long spinNanos;
    /** The consumer's place: the position after the message {@link #poll} returned last (consumer thread only). */
    private long pendingHead = -1;
    /** The tail after the message {@link #claim} made room for (producer thread only). */
    private long claimedTail = -1;

    /**
     * @param control   this ring's control block ({@link #CONTROL_BYTES}, 64-byte aligned)
     * @param data      its data area: a power of two of bytes, at least 4 KiB
     * @param spinNanos how long {@link #await} spins before it sleeps
     */
    public ShmRing(MemorySegment control, MemorySegment data, long spinNanos) {
        if (control.byteSize() < CONTROL_BYTES) {
            throw new IllegalArgumentException("ring control block of " + control.byteSize() + " bytes, need " + CONTROL_BYTES);
        }
        long c = data.byteSize();
        if (c < 4096 || c > 1L << 30 || Long.bitCount(c) != 1) {
            throw new IllegalArgumentException("ring capacity must be a power of two in [4 KiB, 1 GiB], got " + c);
        }
        this.control = control.asSlice(0, CONTROL_BYTES);
        this.data = data;
        this.doorbell = control.asSlice(DOORBELL, 4);
        this.capacity = (int) c;
        this.spinNanos = Math.max(0, spinNanos);
    }

    /** Bytes of the data area. */
    public int capacity() {
        return capacity;
    }

    /** The largest payload one message may have: half the data area, less its record header. */
    public int maxMessage() {
        return capacity / 2 - RECORD_HEADER;
    }

    private static int recordBytes(int payload) {
        return (RECORD_HEADER + payload + 7) & ~7;
    }

    // ------------------------------------------------------------------ producer

    /**
     * Room for a message of {@code length} bytes, or null when the ring has no room for it now
     * (the consumer is behind). Write the payload into the returned segment, then {@link #publish}.
     * Producer thread only.
     *
     * @throws IllegalArgumentException when {@code length} exceeds {@link #maxMessage()}
     */
    public MemorySegment claim(int length) {
        if (length < 0 || length > maxMessage()) {
            throw new IllegalArgumentException("a ring message of " + length + " bytes; at most " + maxMessage() + " fit");
        }
        long tail = (long) LONG.getVolatile(control, TAIL);
        long head = (long) LONG.getVolatile(control, HEAD);
        int record = recordBytes(length);
        int at = (int) (tail & (capacity - 1));
        int toEnd = capacity - at;
        long need = record <= toEnd ? record : toEnd + (long) record;
        if (tail - head + need > capacity) {
            return null;
        }
        if (record > toEnd) {
            // padding fills the rest of the area; the consumer skips it (it is published with the message)
            data.set(I32, at, toEnd - RECORD_HEADER);
            data.set(I32, at + 4, TYPE_PADDING);
            at = 0;
        }
        data.set(I32, at, length);
        data.set(I32, at + 4, TYPE_MESSAGE);
        claimedTail = tail + need;
        return data.asSlice(at + RECORD_HEADER, length);
    }

    /**
     * As {@link #claim(int)}, waiting (parked, 50 µs at a time) while the consumer is behind, at
     * most {@code timeoutNanos} or until {@code stop} says so; null then.
     */
    public MemorySegment claim(int length, long timeoutNanos, BooleanSupplier stop) {
        long end = System.nanoTime() + timeoutNanos;
        for (MemorySegment room = claim(length); ; room = claim(length)) {
            if (room != null || stop.getAsBoolean() || System.nanoTime() - end >= 0) {
                return room;
            }
            LockSupport.parkNanos(50_000);
        }
    }

    /** Makes the claimed message visible to the consumer and wakes it if it sleeps. */
    public void publish() {
        if (claimedTail < 0) {
            throw new IllegalStateException("publish without claim");
        }
        LONG.setVolatile(control, TAIL, claimedTail);
        claimedTail = -1;
        INT.getAndAdd(control, DOORBELL, 1);
        if ((int) INT.getVolatile(control, SLEEPING) != 0) {
            Futex.wake(doorbell);
        }
    }

    /** Wakes the consumer whatever it waits for (the ring is closing: it re-checks its stop condition). */
    public void wakeConsumer() {
        INT.getAndAdd(control, DOORBELL, 1);
        Futex.wake(doorbell);
    }

    // ------------------------------------------------------------------ consumer

    /**
     * The next message's payload, or null when none is published. Valid until {@link #release};
     * consumer thread only. Throws {@link RingCorruptException} when the positions or the record
     * cannot be right.
     */
    public MemorySegment poll() {
        if (pendingHead >= 0) {
            throw new IllegalStateException("poll before the previous message was released");
        }
        long head = (long) LONG.getVolatile(control, HEAD);
        while (true) {
            long tail = (long) LONG.getVolatile(control, TAIL);
            long used = tail - head;
            if (used == 0) {
                return null;
            }
            if (used < 0 || used > capacity || (head & 7) != 0) {
                throw new RingCorruptException("ring positions head " + head + ", tail " + tail + " (capacity " + capacity + ")");
            }
            int at = (int) (head & (capacity - 1));
            int toEnd = capacity - at;
            if (toEnd < RECORD_HEADER || used < RECORD_HEADER) {
                throw new RingCorruptException("a record header at " + at + " with " + used + " bytes published");
            }
            int length = data.get(I32, at);
            int type = data.get(I32, at + 4);
            if (type == TYPE_PADDING) {
                if (length != toEnd - RECORD_HEADER || used < toEnd) {
                    throw new RingCorruptException("padding of " + length + " bytes at " + at);
                }
                head += toEnd;
                LONG.setVolatile(control, HEAD, head);
                continue;
            }
            if (type != TYPE_MESSAGE || length < 0 || length > maxMessage() || recordBytes(length) > toEnd
                    || recordBytes(length) > used) {
                throw new RingCorruptException("a record of type " + type + " and " + length + " bytes at " + at + " (" + used
                        + " bytes published)");
            }
            pendingHead = head + recordBytes(length);
            return data.asSlice(at + RECORD_HEADER, length);
        }
    }

    /** Gives the room of the message {@link #poll} returned back to the producer. */
    public void release() {
        if (pendingHead < 0) {
            throw new IllegalStateException("release without a polled message");
        }
        LONG.setVolatile(control, HEAD, pendingHead);
        pendingHead = -1;
    }

    /** Whether a message (or padding) is published and not consumed. */
    public boolean hasMessage() {
        return (long) LONG.getVolatile(control, TAIL) != (long) LONG.getVolatile(control, HEAD);
    }

    /**
     * Waits until a message is published or {@code stop} says so, at most {@code timeoutNanos}:
     * spins for the configured time, then sleeps on the doorbell. Returns whether a message is
     * there. Consumer thread only.
     */
    public boolean await(long timeoutNanos, BooleanSupplier stop) {
        long start = System.nanoTime();
        long spinEnd = start + Math.min(spinNanos, timeoutNanos);
        while (true) {
            if (hasMessage()) {
                return true;
            }
            if (stop.getAsBoolean() || System.nanoTime() - spinEnd >= 0) {
                break;
            }
            Thread.onSpinWait();
        }
        for (int round = 0; ; round++) {
            long left = start + timeoutNanos - System.nanoTime();
            if (left <= 0 || stop.getAsBoolean()) {
                return hasMessage();
            }
            int seen = (int) INT.getVolatile(control, DOORBELL);
            INT.setVolatile(control, SLEEPING, 1);
            try {
                if (hasMessage()) {
                    return true;
                }
                Futex.await(doorbell, seen, Math.min(left, MAX_SLEEP_NANOS), round);
            } finally {
                INT.setVolatile(control, SLEEPING, 0);
            }
            if (hasMessage()) {
                return true;
            }
        }
    }

    /** Thrown by {@link #poll} when the ring's contents cannot be right (a broken or hostile peer). */
    public static final class RingCorruptException extends RuntimeException {
        public RingCorruptException(String message) {
            super(message);
        }
    }
}
