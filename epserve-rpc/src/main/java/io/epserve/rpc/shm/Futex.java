package io.epserve.rpc.shm;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Sleeping on a 32-bit word of shared memory until another process changes it: Linux's futex
 * ({@code futex(2)}, FUTEX_WAIT / FUTEX_WAKE without the private flag, so the key is the mapped
 * file's page and the wait works across processes), called through libc's {@code syscall} with
 * the foreign function interface.
 *
 * <p>Why not a library: Agrona and Aeron wait with idle strategies (spin, yield, timed park) that
 * either burn a core or add their park period to every hand-off; a waiter in another process
 * cannot be unparked. A futex wakes the sleeper as soon as the word changes and costs nothing
 * while idle. Where there is no futex (not Linux, an unknown architecture, no native access),
 * {@link #await} parks for a short, growing time instead and {@link #wake} does nothing: slower
 * hand-offs, the same results.
 */
public final class Futex {
    private Futex() {}

    private static final int FUTEX_WAIT = 0;
    private static final int FUTEX_WAKE = 1;
    private static final long NANOS_PER_SECOND = 1_000_000_000L;
    /** The longest single park of the fallback: bounds how late it sees a change (and costs ~1000 wake-ups a second idle). */
    private static final long FALLBACK_MAX_PARK_NANOS = TimeUnit.MILLISECONDS.toNanos(1);

    private static final MethodHandle SYSCALL;
    private static final long SYS_FUTEX;
    private static final String STATUS;

    static {
        MethodHandle h = null;
        long nr = -1;
        String status;
        try {
            String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
            String arch = System.getProperty("os.arch", "");
            // the futex system call's number differs by architecture
            if (os.startsWith("linux") && (arch.equals("amd64") || arch.equals("x86_64"))) {
                nr = 202;
            } else if (os.startsWith("linux") && arch.equals("aarch64")) {
                nr = 98;
            }
            if (nr < 0) {
                status = "timed parking (no futex on " + os + "/" + arch + ")";
            } else {
                Linker linker = Linker.nativeLinker();
                MemorySegment syscall = linker.defaultLookup().find("syscall")
                        .orElseThrow(() -> new IllegalStateException("libc has no syscall()"));
                // long syscall(long number, ...): every variadic argument as a long (glibc reads them so)
                h = linker.downcallHandle(syscall, FunctionDescriptor.of(JAVA_LONG, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS,
                        JAVA_LONG, JAVA_LONG), Linker.Option.firstVariadicArg(1));
                status = "futex";
            }
        } catch (Throwable t) {
            h = null;
            status = "timed parking (futex not usable: " + t + ")";
        }
        SYSCALL = h;
        SYS_FUTEX = nr;
        STATUS = status;
    }

    /** Whether waits sleep on a futex (else they park for short, growing times). */
    public static boolean available() {
        return SYSCALL != null;
    }

    /** "futex", or how waits are done instead and why. */
    public static String status() {
        return STATUS;
    }

    /**
     * Sleeps while the int at {@code word} (4-byte aligned, in a shared mapping) holds
     * {@code expected}, at most {@code timeoutNanos}; returns early when woken, when the value
     * differs already, or on a signal. Callers re-check their condition after every return.
     */
    public static void await(MemorySegment word, int expected, long timeoutNanos, int round) {
        if (timeoutNanos <= 0) {
            return;
        }
        if (SYSCALL == null) {
            // round counts the caller's consecutive waits: 20 µs, 40 µs, ... up to the maximum
            long park = Math.min(FALLBACK_MAX_PARK_NANOS, TimeUnit.MICROSECONDS.toNanos(20) << Math.min(round, 10));
            LockSupport.parkNanos(Math.min(park, timeoutNanos));
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment timespec = a.allocate(16, 8);
            timespec.set(JAVA_LONG, 0, timeoutNanos / NANOS_PER_SECOND);
            timespec.set(JAVA_LONG, 8, timeoutNanos % NANOS_PER_SECOND);
            long r = (long) SYSCALL.invokeExact(SYS_FUTEX, word, (long) FUTEX_WAIT, expected & 0xffff_ffffL, timespec, 0L, 0L);
        } catch (Throwable t) {
            throw new IllegalStateException("futex wait failed", t);
        }
    }

    /** Wakes one process sleeping in {@link #await} on {@code word}. */
    public static void wake(MemorySegment word) {
        if (SYSCALL == null) {
            return;
        }
        try {
            long r = (long) SYSCALL.invokeExact(SYS_FUTEX, word, (long) FUTEX_WAKE, 1L, MemorySegment.NULL, 0L, 0L);
        } catch (Throwable t) {
            throw new IllegalStateException("futex wake failed", t);
        }
    }
}
