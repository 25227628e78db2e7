package io.epserve.tensor;

import java.lang.foreign.MemorySegment;

/**
 * The heap segments of the arrays a thread passes to native kernels, made once per array and
 * thread. A segment handed to a downcall escapes, so a fresh {@link MemorySegment#ofArray} per
 * call would allocate on every product of a decode step; the arrays are the engine's reused
 * workspace buffers, so a handful of entries per thread hit nearly always.
 */
final class HeapSegments {
    private static final int ENTRIES = 8;
    private static final ThreadLocal<HeapSegments> CACHE = ThreadLocal.withInitial(HeapSegments::new);

    private final Object[] arrays = new Object[ENTRIES];
    private final MemorySegment[] segments = new MemorySegment[ENTRIES];
    private int next;

    private HeapSegments() {}

    static MemorySegment of(float[] a) {
        HeapSegments c = CACHE.get();
        int i = c.find(a);
        return i >= 0 ? c.segments[i] : c.put(a, MemorySegment.ofArray(a));
    }

    static MemorySegment of(byte[] a) {
        HeapSegments c = CACHE.get();
        int i = c.find(a);
        return i >= 0 ? c.segments[i] : c.put(a, MemorySegment.ofArray(a));
    }

    static MemorySegment of(int[] a) {
        HeapSegments c = CACHE.get();
        int i = c.find(a);
        return i >= 0 ? c.segments[i] : c.put(a, MemorySegment.ofArray(a));
    }

    private int find(Object a) {
        for (int i = 0; i < ENTRIES; i++) {
            if (arrays[i] == a) {
                return i;
            }
        }
        return -1;
    }

    /** Replaces the oldest entry. */
    private MemorySegment put(Object a, MemorySegment s) {
        arrays[next] = a;
        segments[next] = s;
        next = (next + 1) % ENTRIES;
        return s;
    }
}
