package io.epserve.model.tokenizer;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Byte-pair encoding of one pre-tokenized word (Sennrich et al. 2016; the merge order of
 * Hugging Face {@code models/bpe/word.rs}): start from one symbol per char and repeatedly merge
 * the adjacent pair whose merge has the lowest rank, the leftmost first on equal rank, until no
 * adjacent pair has a merge.
 *
 * <p>The loop keeps the symbols in a doubly linked list over arrays and the candidate merges in
 * a binary heap of {@code rank << 32 | position}; a popped candidate is used only if the pair at
 * its position is still the pair it was made for. So a word of n chars costs O(n log n), which
 * matters for sentencepiece conversions without a pre-tokenizer, where a whole prompt is one
 * word. Results for words up to {@link #CACHE_MAX_WORD} chars are cached.
 *
 * <p>Immutable after construction and safe for concurrent use.
 */
final class BpeModel {
    static final int CACHE_MAX_WORD = 256;
    private static final int CACHE_MAX_ENTRIES = 65_536;

    private final Map<String, Integer> vocab;
    /** Id of each single BMP char token, -1 if none: the hot lookup for initial symbols. */
    private final int[] charIds;
    private final PairMap merges;
    private final int[] mergeResult;
    private final int unkId;
    private final boolean fuseUnk;
    private final boolean byteFallback;
    private final int[] byteFallbackIds;
    private final boolean ignoreMerges;
    private final ConcurrentHashMap<String, int[]> cache = new ConcurrentHashMap<>();

    /**
     * @param mergePairs {@code [rank][0..1]} the left and right token ids of each merge
     * @param mergeResult the id each merge produces, by rank
     */
    BpeModel(Map<String, Integer> vocab, int[][] mergePairs, int[] mergeResult, int unkId, boolean fuseUnk,
             boolean byteFallback, boolean ignoreMerges) {
        this.vocab = vocab;
        this.charIds = new int[65_536];
        Arrays.fill(charIds, -1);
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            String k = e.getKey();
            if (k.length() == 1) {
                charIds[k.charAt(0)] = e.getValue();
            }
        }
        this.merges = new PairMap(mergePairs.length);
        for (int r = 0; r < mergePairs.length; r++) {
            merges.put(mergePairs[r][0], mergePairs[r][1], r);
        }
        this.mergeResult = mergeResult;
        this.unkId = unkId;
        this.fuseUnk = fuseUnk;
        this.byteFallback = byteFallback;
        this.byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++) {
            Integer id = vocab.get(String.format("<0x%02X>", b));
            byteFallbackIds[b] = id == null ? -1 : id;
        }
        this.ignoreMerges = ignoreMerges;
    }

    int mergeCount() {
        return mergeResult.length;
    }

    /** Appends the ids of {@code word} to {@code out}. */
    void encodeWord(String word, IntList out) {
        if (word.isEmpty()) {
            return;
        }
        if (ignoreMerges) {
            Integer whole = vocab.get(word);
            if (whole != null) {
                out.add(whole);
                return;
            }
        }
        if (word.length() <= CACHE_MAX_WORD) {
            int[] cached = cache.get(word);
            if (cached == null) {
                cached = merge(word);
                if (cache.size() >= CACHE_MAX_ENTRIES) {
                    cache.clear(); // crude but bounded; the working set of words refills quickly
                }
                cache.put(word, cached);
            }
            out.addAll(cached);
        } else {
            out.addAll(merge(word));
        }
    }

    private int[] merge(String word) {
        int len = word.length();
        int[] id = new int[len + 4];
        int n = 0;
        for (int i = 0; i < len; ) {
            int cp = word.codePointAt(i);
            int cl = Character.charCount(cp);
            int tid = cl == 1 ? charIds[word.charAt(i)] : vocab.getOrDefault(word.substring(i, i + cl), -1);
            if (tid >= 0) {
                id = ensure(id, n + 1);
                id[n++] = tid;
            } else {
                byte[] utf8 = word.substring(i, i + cl).getBytes(StandardCharsets.UTF_8);
                boolean allBytes = byteFallback;
                for (int k = 0; allBytes && k < utf8.length; k++) {
                    allBytes = byteFallbackIds[utf8[k] & 0xFF] >= 0;
                }
                if (allBytes) {
                    id = ensure(id, n + utf8.length);
                    for (byte b : utf8) {
                        id[n++] = byteFallbackIds[b & 0xFF];
                    }
                } else if (unkId >= 0) {
                    if (!(fuseUnk && n > 0 && id[n - 1] == unkId)) {
                        id = ensure(id, n + 1);
                        id[n++] = unkId;
                    }
                }
                // else: no way to spell the char; HF drops it too.
            }
            i += cl;
        }
        if (n < 2 || mergeResult.length == 0) {
            return Arrays.copyOf(id, n);
        }
        int[] next = new int[n];
        int[] prev = new int[n];
        for (int i = 0; i < n; i++) {
            next[i] = i + 1 < n ? i + 1 : -1;
            prev[i] = i - 1;
        }
        LongHeap heap = new LongHeap(n);
        for (int i = 0; i + 1 < n; i++) {
            int r = merges.get(id[i], id[i + 1]);
            if (r >= 0) {
                heap.push(((long) r << 32) | i);
            }
        }
        int alive = n;
        while (!heap.isEmpty()) {
            long top = heap.pop();
            int r = (int) (top >>> 32);
            int pos = (int) top;
            if (id[pos] < 0) {
                continue;
            }
            int nx = next[pos];
            if (nx < 0 || merges.get(id[pos], id[nx]) != r) {
                continue; // stale: one side was merged into something else since
            }
            id[pos] = mergeResult[r];
            id[nx] = -1;
            alive--;
            int nn = next[nx];
            next[pos] = nn;
            if (nn >= 0) {
                prev[nn] = pos;
                int r2 = merges.get(id[pos], id[nn]);
                if (r2 >= 0) {
                    heap.push(((long) r2 << 32) | pos);
                }
            }
            int pv = prev[pos];
            if (pv >= 0) {
                int r1 = merges.get(id[pv], id[pos]);
                if (r1 >= 0) {
                    heap.push(((long) r1 << 32) | pv);
                }
            }
        }
        int[] result = new int[alive];
        int k = 0;
        for (int i = 0; i >= 0; i = next[i]) {
            result[k++] = id[i];
        }
        return result;
    }

    private static int[] ensure(int[] a, int size) {
        return size <= a.length ? a : Arrays.copyOf(a, Math.max(size, a.length * 2));
    }

    /** Min-heap of longs. */
    private static final class LongHeap {
        private long[] h;
        private int n;

        LongHeap(int capacity) {
            h = new long[Math.max(4, capacity)];
        }

        boolean isEmpty() {
            return n == 0;
        }

        void push(long v) {
            if (n == h.length) {
                h = Arrays.copyOf(h, n * 2);
            }
            int i = n++;
            while (i > 0) {
                int p = (i - 1) >>> 1;
                if (h[p] <= v) {
                    break;
                }
                h[i] = h[p];
                i = p;
            }
            h[i] = v;
        }

        long pop() {
            long top = h[0];
            long last = h[--n];
            int i = 0;
            while (true) {
                int c = 2 * i + 1;
                if (c >= n) {
                    break;
                }
                if (c + 1 < n && h[c + 1] < h[c]) {
                    c++;
                }
                if (h[c] >= last) {
                    break;
                }
                h[i] = h[c];
                i = c;
            }
            if (n > 0) {
                h[i] = last;
            }
            return top;
        }
    }

    /** Open-addressing map from a pair of token ids to the rank of their merge. */
    static final class PairMap {
        private final long[] keys;
        private final int[] vals;
        private final int mask;

        PairMap(int expected) {
            int cap = Integer.highestOneBit(Math.max(4, expected * 2 - 1)) << 1;
            keys = new long[cap];
            vals = new int[cap];
            Arrays.fill(vals, -1);
            mask = cap - 1;
        }

        private static long key(int a, int b) {
            return ((long) a << 32) | (b & 0xFFFF_FFFFL);
        }

        private static int slot(long k) {
            long x = k * 0x9E37_79B9_7F4A_7C15L;
            return (int) (x ^ (x >>> 29));
        }

        void put(int a, int b, int v) {
            long k = key(a, b);
            for (int i = slot(k) & mask; ; i = (i + 1) & mask) {
                if (vals[i] < 0) {
                    keys[i] = k;
                    vals[i] = v;
                    return;
                }
                if (keys[i] == k) {
                    vals[i] = v; // a repeated merge takes its last rank, as HF's map does
                    return;
                }
            }
        }

        int get(int a, int b) {
            long k = key(a, b);
            for (int i = slot(k) & mask; ; i = (i + 1) & mask) {
                int v = vals[i];
                if (v < 0) {
                    return -1;
                }
                if (keys[i] == k) {
                    return v;
                }
            }
        }
    }
}
