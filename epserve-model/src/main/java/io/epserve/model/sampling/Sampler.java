package io.epserve.model.sampling;

import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Chooses the next token from a row of logits.
 *
 * <p>Greedy ({@code temperature == 0}): the argmax, ties to the lowest id, NaN ignored.
 *
 * <p>Otherwise, in the order of Hugging Face's logits warpers (temperature, top-k, top-p,
 * min-p), which the vLLM docs also describe; note that vLLM v1's implementation applies min-p
 * <em>before</em> top-k/top-p, so the two can differ when min-p is combined with top-p:
 * <ol>
 *   <li>temperature: {@code p_i ∝ exp((l_i - max) / T)} (computed in double);</li>
 *   <li>top-k: keep the k largest logits and every logit equal to the k-th (HF and vLLM mask
 *       with "logit &lt; k-th value", so ties at the boundary stay);</li>
 *   <li>top-p: walk the survivors from most to least likely (ties: lower id first) and keep the
 *       shortest prefix whose mass reaches {@code topP} of the total; the top token always stays;</li>
 *   <li>min-p: drop tokens with {@code p_i < minP · p_max};</li>
 *   <li>draw {@code u ~ U[0, total)} from the sequence's generator and take the token whose
 *       cumulative weight passes u.</li>
 * </ol>
 * Tokens with logit {@code -∞} (masked) are never drawn. If the largest logit is {@code +∞},
 * the lowest id holding it is returned.
 *
 * Tokens more than 40 nats below the top after temperature get probability 0 (each would have
 * less than 4e-18).
 *
 * <p>The instance keeps scratch arrays sized to the vocabulary and allocates nothing per call:
 * top-k selects with a bounded heap (O(V log k)) and sorts only the k survivors; top-p alone
 * finds the nucleus with a quickselect steered by probability mass (expected O(V)), never
 * sorting the vocabulary. Not thread-safe: one per engine thread.
 * The random generator belongs to the sequence, so interleaving sequences does not change any
 * sequence's tokens.
 */
public final class Sampler {
    private final int vocabSize;
    /** Candidate sort keys: (logit descending, id ascending) packed into a long, see {@link #key}. */
    private final long[] keys;
    private final double[] weights;

    public Sampler(int vocabSize) {
        if (vocabSize <= 0) {
            throw new IllegalArgumentException("vocabSize must be > 0, got " + vocabSize);
        }
        this.vocabSize = vocabSize;
        this.keys = new long[vocabSize];
        this.weights = new double[vocabSize];
    }

    /**
     * The random generator for one sequence. {@link SplittableRandom}'s algorithm is fixed by
     * its specification, so a seed gives the same tokens on every JDK.
     */
    public static RandomGenerator newRandom(long seed) {
        return new SplittableRandom(seed);
    }

    public int vocabSize() {
        return vocabSize;
    }

    /** Samples from {@code logits[0 .. vocabSize)}. */
    public int sample(float[] logits, SamplingParams params, RandomGenerator random) {
        return sample(logits, 0, params, random);
    }

    /** Samples from {@code logits[offset .. offset + vocabSize)} (a row of a batch buffer); returns a token id. */
    public int sample(float[] logits, int offset, SamplingParams params, RandomGenerator random) {
        if (offset < 0 || offset + vocabSize > logits.length) {
            throw new IllegalArgumentException("logits row [" + offset + ", " + (offset + vocabSize)
                    + ") does not fit in an array of " + logits.length);
        }
        int top = argmax(logits, offset, vocabSize);
        if (params.isGreedy()) {
            return top;
        }
        float max = logits[offset + top];
        if (max == Float.POSITIVE_INFINITY) {
            return top;
        }
        double invT = 1.0 / params.temperature();

        // 1-2. Temperature and top-k: candidates as (key, weight), weight = exp((l - max) / T),
        // so the top token weighs exactly 1.
        int c = 0;
        double total = 0.0;
        int k = params.topK();
        boolean sorted = k > 0 && k < vocabSize;
        if (sorted) {
            int m = selectTopK(logits, offset, k);
            for (int j = 0; j < m; j++) {
                double w = weight(logits[offset + (int) keys[j]], max, invT);
                if (w > 0.0) {
                    keys[c] = keys[j];
                    weights[c++] = w;
                    total += w;
                }
            }
        } else {
            for (int i = 0; i < vocabSize; i++) {
                float v = logits[offset + i];
                double w = weight(v, max, invT);
                if (w > 0.0) { // NaN, masked and negligible tokens drop out here
                    keys[c] = key(v, i);
                    weights[c++] = w;
                    total += w;
                }
            }
        }

        // 3. Top-p: the shortest run, most likely first, whose mass reaches topP of the total.
        if (params.topP() < 1.0) {
            double target = params.topP() * total;
            c = sorted ? prefixReaching(target, c) : nucleus(target, c, logits, offset, max, invT);
            total = 0.0;
            for (int j = 0; j < c; j++) {
                total += weights[j];
            }
        }

        // 4. Min-p: the top token always survives with weight 1, so the threshold is minP itself.
        if (params.minP() > 0.0) {
            double threshold = params.minP();
            int kept = 0;
            total = 0.0;
            for (int j = 0; j < c; j++) {
                if (weights[j] >= threshold) {
                    keys[kept] = keys[j];
                    weights[kept++] = weights[j];
                    total += weights[j];
                }
            }
            c = kept;
        }

        // 5. Draw.
        double u = random.nextDouble() * total;
        for (int j = 0; j < c; j++) {
            u -= weights[j];
            if (u < 0.0) {
                return (int) keys[j];
            }
        }
        return (int) keys[c - 1]; // rounding left u at or just above zero: the last candidate
    }

    /**
     * {@code exp((v - max) / T)}, or 0 for a token more than {@link #NEGLIGIBLE} nats below the
     * top after temperature: its probability is below 4e-18, it can never matter to a draw, and
     * skipping {@code exp} for the long tail of a real vocabulary saves most of the time.
     */
    private static double weight(float v, float max, double invT) {
        double x = (v - max) * invT;
        return x > NEGLIGIBLE ? Math.exp(x) : 0.0; // false for NaN and -inf too
    }

    private static final double NEGLIGIBLE = -40.0;

    /** Number of leading candidates (sorted, most likely first) whose weights first reach {@code target}. */
    private int prefixReaching(double target, int c) {
        double cum = 0.0;
        for (int j = 0; j < c; j++) {
            cum += weights[j];
            if (cum >= target) {
                return j + 1;
            }
        }
        return c;
    }

    /**
     * Rearranges the candidates so that {@code [0, return)} is the nucleus: the candidates that
     * come first in key order (most likely first, ties to the lower id) until their weight
     * reaches {@code target}. A quickselect that steers by mass instead of by count, so it runs
     * in expected O(c) without sorting the vocabulary; the nucleus comes out unsorted, which
     * changes which token a given random number picks but not the distribution.
     */
    private int nucleus(double target, int c, float[] logits, int offset, float max, double invT) {
        int lo = 0;
        int hi = c;
        double before = 0.0; // mass of [0, lo), all inside the nucleus; stays below target
        for (int round = 0; hi - lo > 16 && round < 64; round++) {
            int mid = (lo + hi) >>> 1;
            int p = medianOfThree(lo, mid, hi - 1);
            swap(p, hi - 1);
            long pivot = keys[hi - 1];
            int i = lo;
            double mass = 0.0;
            for (int j = lo; j < hi - 1; j++) {
                if (keys[j] < pivot) {
                    mass += weights[j];
                    swap(i++, j);
                }
            }
            swap(i, hi - 1); // the pivot in its final place
            if (before + mass >= target) {
                hi = i;
            } else if (before + mass + weights[i] >= target) {
                return i + 1;
            } else {
                before += mass + weights[i];
                lo = i + 1;
            }
        }
        // What is left is small (or the pivots were unlucky): sort it and walk it.
        heapSort(keys, lo, hi);
        for (int j = lo; j < hi; j++) {
            weights[j] = weight(logits[offset + (int) keys[j]], max, invT);
            before += weights[j];
            if (before >= target) {
                return j + 1;
            }
        }
        return hi;
    }

    private int medianOfThree(int a, int b, int c) {
        long x = keys[a];
        long y = keys[b];
        long z = keys[c];
        if (x < y) {
            return y < z ? b : x < z ? c : a;
        }
        return x < z ? a : y < z ? c : b;
    }

    private void swap(int i, int j) {
        long k = keys[i];
        keys[i] = keys[j];
        keys[j] = k;
        double w = weights[i];
        weights[i] = weights[j];
        weights[j] = w;
    }

    /**
     * Index of the largest value in {@code logits[offset .. offset + length)}, ties to the lowest
     * index, NaN ignored.
     *
     * @throws IllegalArgumentException if no value is larger than {@code -∞}
     */
    public static int argmax(float[] logits, int offset, int length) {
        int best = -1;
        float bestValue = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < length; i++) {
            float v = logits[offset + i];
            if (v > bestValue) {
                bestValue = v;
                best = i;
            }
        }
        if (best < 0) {
            throw new IllegalArgumentException("logits have no value above -infinity (all masked or NaN)");
        }
        return best;
    }

    /**
     * Leaves in {@code keys[0 .. return)} the k largest logits plus those tied with the k-th,
     * sorted (logit descending, id ascending).
     */
    private int selectTopK(float[] logits, int offset, int k) {
        // Max-heap of keys (the root is the worst kept candidate) of size <= k.
        int size = 0;
        for (int i = 0; i < vocabSize; i++) {
            float v = logits[offset + i];
            if (v != v) {
                continue; // NaN
            }
            long key = key(v, i);
            if (size < k) {
                keys[size] = key;
                siftUp(keys, size++);
            } else if (key < keys[0]) {
                keys[0] = key;
                siftDown(keys, 0, size);
            }
        }
        // keys[0..size) is a max-heap; sort it in place (ascending key = best first).
        for (int end = size - 1; end > 0; end--) {
            long t = keys[0];
            keys[0] = keys[end];
            keys[end] = t;
            siftDown(keys, 0, end);
        }
        if (size < k) {
            return size;
        }
        // Ties with the k-th logit beyond the k kept: those with a higher id, in id order.
        float kth = logits[offset + (int) keys[size - 1]];
        int lastId = (int) keys[size - 1];
        for (int i = lastId + 1; i < vocabSize; i++) {
            if (logits[offset + i] == kth) {
                keys[size++] = key(kth, i);
            }
        }
        return size;
    }

    /**
     * Sort key ordering by logit descending, then id ascending, as a signed long. The float's
     * bits are made monotone as a signed int ({@code bits ^ ((bits >> 31) & 0x7fffffff)}),
     * complemented for descending order, and put above the id.
     */
    static long key(float v, int id) {
        int bits = Float.floatToRawIntBits(v);
        int monotone = bits ^ ((bits >> 31) & 0x7fff_ffff);
        return ((long) ~monotone << 32) | (id & 0xFFFF_FFFFL);
    }

    /** In-place ascending heap sort of {@code a[from .. to)}: no allocation, O(n log n) always. */
    static void heapSort(long[] a, int from, int to) {
        int n = to - from;
        for (int i = n / 2 - 1; i >= 0; i--) {
            siftDown(a, from, i, n);
        }
        for (int end = n - 1; end > 0; end--) {
            long t = a[from];
            a[from] = a[from + end];
            a[from + end] = t;
            siftDown(a, from, 0, end);
        }
    }

    private static void siftUp(long[] h, int i) {
        long v = h[i];
        while (i > 0) {
            int p = (i - 1) >>> 1;
            if (h[p] >= v) {
                break;
            }
            h[i] = h[p];
            i = p;
        }
        h[i] = v;
    }

    private static void siftDown(long[] h, int i, int n) {
        siftDown(h, 0, i, n);
    }

    /** Sift-down in the max-heap {@code h[base .. base + n)}. */
    private static void siftDown(long[] h, int base, int i, int n) {
        long v = h[base + i];
        while (true) {
            int c = 2 * i + 1;
            if (c >= n) {
                break;
            }
            if (c + 1 < n && h[base + c + 1] > h[base + c]) {
                c++;
            }
            if (h[base + c] <= v) {
                break;
            }
            h[base + i] = h[base + c];
            i = c;
        }
        h[base + i] = v;
    }
}
