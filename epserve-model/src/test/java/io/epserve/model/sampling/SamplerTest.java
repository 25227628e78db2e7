package io.epserve.model.sampling;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;
import org.junit.jupiter.api.Test;

/**
 * Filters on small hand-made distributions, seeded reproducibility and sample frequencies. All
 * draws use fixed seeds, so every count is deterministic and the tolerances cannot flake.
 */
class SamplerTest {
    /** Probabilities 0.5, 0.3, 0.15, 0.05 as logits (log p). */
    private static final float[] P4 = logits(0.5, 0.3, 0.15, 0.05);

    private static float[] logits(double... p) {
        float[] l = new float[p.length];
        for (int i = 0; i < p.length; i++) {
            l[i] = (float) Math.log(p[i]);
        }
        return l;
    }

    /** Relative frequency of each id over {@code n} draws. */
    private static double[] frequencies(float[] logits, SamplingParams params, int n) {
        Sampler s = new Sampler(logits.length);
        RandomGenerator r = Sampler.newRandom(params.seed());
        double[] f = new double[logits.length];
        for (int i = 0; i < n; i++) {
            f[s.sample(logits, params, r)] += 1.0 / n;
        }
        return f;
    }

    @Test
    void greedyTakesTheLowestIdAmongTies() {
        Sampler s = new Sampler(5);
        RandomGenerator r = Sampler.newRandom(1);
        assertThat(s.sample(new float[] {1, 3, 2, 3, 0}, SamplingParams.GREEDY, r)).isEqualTo(1);
        assertThat(s.sample(new float[] {Float.NaN, -1, -1, Float.NEGATIVE_INFINITY, -2}, SamplingParams.GREEDY, r)).isEqualTo(1);
        assertThat(s.sample(new float[] {0, 0, 0, 0, 0}, SamplingParams.GREEDY, r)).isZero();
        assertThat(Sampler.argmax(new float[] {9, 1, 5, 5}, 1, 3)).isEqualTo(1); // within the row: 5 at index 1
    }

    /** A temperature too small to divide by (1 / T overflows) is greedy, not a NaN weight and a failed draw. */
    @Test
    void subnormalTemperaturesAreGreedy() {
        Sampler s = new Sampler(5);
        float[] logits = {0.5f, 3f, 3f, -1f, 2.9999f};
        for (double t : new double[] {1e-310, 5e-324, Double.MIN_VALUE, 5.5e-309}) {
            SamplingParams p = new SamplingParams(t, 0, 0.9, 0.1, 7);
            assertThat(p.isGreedy()).as("temperature %s", t).isTrue();
            assertThat(s.sample(logits, p, Sampler.newRandom(3))).as("temperature %s", t).isEqualTo(1);
        }
        assertThat(new SamplingParams(1e-300, 0, 1.0, 0.0, 7).isGreedy()).isFalse();
        assertThat(s.sample(logits, SamplingParams.temperature(1e-300, 7), Sampler.newRandom(3))).isIn(1, 2);
    }

    @Test
    void allMaskedLogitsAreABug() {
        Sampler s = new Sampler(3);
        float[] masked = {Float.NEGATIVE_INFINITY, Float.NaN, Float.NEGATIVE_INFINITY};
        assertThatThrownBy(() -> s.sample(masked, SamplingParams.GREEDY, Sampler.newRandom(0)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("masked");
        assertThatThrownBy(() -> s.sample(masked, SamplingParams.temperature(1, 0), Sampler.newRandom(0)))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> s.sample(new float[2], SamplingParams.GREEDY, Sampler.newRandom(0)))
                .hasMessageContaining("does not fit");
    }

    @Test
    void samplesRowsOfABatchBuffer() {
        Sampler s = new Sampler(3);
        float[] batch = {5, 0, 0, /* row 1 */ 0, 0, 5};
        assertThat(s.sample(batch, 3, SamplingParams.GREEDY, Sampler.newRandom(0))).isEqualTo(2);
        double[] f = new double[3];
        RandomGenerator r = Sampler.newRandom(5);
        for (int i = 0; i < 1000; i++) {
            f[s.sample(batch, 3, new SamplingParams(1, 1, 1, 0, 5), r)]++;
        }
        assertThat(f).containsExactly(0, 0, 1000);
    }

    @Test
    void frequenciesMatchTheSoftmax() {
        double[] f = frequencies(P4, SamplingParams.temperature(1.0, 123), 40_000);
        assertThat(f[0]).isCloseTo(0.50, within(0.01));
        assertThat(f[1]).isCloseTo(0.30, within(0.01));
        assertThat(f[2]).isCloseTo(0.15, within(0.01));
        assertThat(f[3]).isCloseTo(0.05, within(0.01));
    }

    @Test
    void temperatureFlattensOrSharpens() {
        // T = 2: p ∝ sqrt(p) -> 0.707, 0.548, 0.387, 0.224 over 1.866.
        double[] hot = frequencies(P4, SamplingParams.temperature(2.0, 9), 40_000);
        assertThat(hot[0]).isCloseTo(0.3789, within(0.01));
        assertThat(hot[3]).isCloseTo(0.1198, within(0.01));
        // T -> 0 behaves like greedy.
        double[] cold = frequencies(P4, SamplingParams.temperature(1e-4, 9), 1_000);
        assertThat(cold[0]).isEqualTo(1.0, within(1e-9));
    }

    @Test
    void topKKeepsTheKMostLikely() {
        // k = 2: 0.5 and 0.3 renormalised -> 0.625 / 0.375.
        double[] f = frequencies(P4, new SamplingParams(1.0, 2, 1.0, 0.0, 77), 40_000);
        assertThat(f[0]).isCloseTo(0.625, within(0.01));
        assertThat(f[1]).isCloseTo(0.375, within(0.01));
        assertThat(f[2]).isZero();
        assertThat(f[3]).isZero();
    }

    @Test
    void topKKeepsTiesWithTheKth() {
        // k = 2 over {2, 1, 1, 1}: the three tied at the 2nd value all stay (HF/vLLM threshold).
        double[] f = frequencies(new float[] {2, 1, 1, 1, 0}, new SamplingParams(1.0, 2, 1.0, 0.0, 5), 20_000);
        assertThat(f[1]).isPositive();
        assertThat(f[2]).isPositive();
        assertThat(f[3]).isPositive();
        assertThat(f[4]).isZero();
    }

    @Test
    void topPKeepsTheSmallestNucleus() {
        // Cumulative 0.5, 0.8, 0.95, 1.0: p = 0.75 keeps {0, 1}; p = 0.85 keeps {0, 1, 2}.
        double[] two = frequencies(P4, new SamplingParams(1.0, 0, 0.75, 0.0, 11), 40_000);
        assertThat(two[0]).isCloseTo(0.625, within(0.01));
        assertThat(two[2]).isZero();
        assertThat(two[3]).isZero();
        double[] three = frequencies(P4, new SamplingParams(1.0, 0, 0.85, 0.0, 11), 40_000);
        assertThat(three[0]).isCloseTo(0.5 / 0.95, within(0.01));
        assertThat(three[2]).isCloseTo(0.15 / 0.95, within(0.01));
        assertThat(three[3]).isZero();
        // A tiny p keeps only the top token.
        double[] one = frequencies(P4, new SamplingParams(1.0, 0, 0.01, 0.0, 11), 1_000);
        assertThat(one[0]).isEqualTo(1.0, within(1e-9));
    }

    @Test
    void minPDropsTokensFarBelowTheTop() {
        // minP 0.25: threshold 0.125 keeps {0.5, 0.3, 0.15}; minP 0.5: threshold 0.25 keeps {0.5, 0.3}.
        double[] three = frequencies(P4, new SamplingParams(1.0, 0, 1.0, 0.25, 3), 40_000);
        assertThat(three[2]).isCloseTo(0.15 / 0.95, within(0.01));
        assertThat(three[3]).isZero();
        double[] two = frequencies(P4, new SamplingParams(1.0, 0, 1.0, 0.5, 3), 40_000);
        assertThat(two[1]).isCloseTo(0.375, within(0.01));
        assertThat(two[2]).isZero();
    }

    @Test
    void filtersApplyInOrderTemperatureTopKTopPMinP() {
        // Five tokens p = 0.4, 0.25, 0.2, 0.1, 0.05. top-k 4 -> {0.4, 0.25, 0.2, 0.1} / 0.95;
        // top-p 0.7 on that: cumulative 0.421, 0.684, 0.895 -> keeps three;
        // min-p 0.55: threshold 0.22 drops 0.2 -> {0.4, 0.25} -> 0.615 / 0.385.
        float[] l = logits(0.4, 0.25, 0.2, 0.1, 0.05);
        double[] f = frequencies(l, new SamplingParams(1.0, 4, 0.7, 0.55, 21), 40_000);
        assertThat(f[0]).isCloseTo(0.4 / 0.65, within(0.01));
        assertThat(f[1]).isCloseTo(0.25 / 0.65, within(0.01));
        assertThat(f[2]).isZero();
        assertThat(f[3]).isZero();
        assertThat(f[4]).isZero();
    }

    @Test
    void maskedTokensAreNeverDrawn() {
        float[] l = {0, Float.NEGATIVE_INFINITY, 0, Float.NaN};
        double[] f = frequencies(l, SamplingParams.temperature(1.0, 2), 10_000);
        assertThat(f[1]).isZero();
        assertThat(f[3]).isZero();
        assertThat(f[0]).isCloseTo(0.5, within(0.02));
    }

    @Test
    void sameSeedSameTokens() {
        float[] l = randomLogits(32_000, 17);
        SamplingParams p = new SamplingParams(0.8, 40, 0.95, 0.01, 2024);
        int[] a = draw(new Sampler(l.length), l, p, 200);
        int[] b = draw(new Sampler(l.length), l, p, 200);
        assertThat(a).containsExactly(b);
        int[] c = draw(new Sampler(l.length), l, p.withSeed(2025), 200);
        assertThat(c).isNotEqualTo(a);
    }

    @Test
    void topKOnALargeVocabularyMatchesAFullSort() {
        Sampler s = new Sampler(50_000);
        float[] l = randomLogits(50_000, 3);
        Integer[] order = new Integer[l.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (x, y) -> l[x] != l[y] ? Float.compare(l[y], l[x]) : Integer.compare(x, y));
        Set<Integer> top = new HashSet<>(Arrays.asList(order).subList(0, 10));
        RandomGenerator r = Sampler.newRandom(8);
        SamplingParams p = new SamplingParams(5.0, 10, 1.0, 0.0, 8); // hot, so all ten get drawn
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i < 2_000; i++) {
            seen.add(s.sample(l, p, r));
        }
        assertThat(seen).isEqualTo(top);
    }

    @Test
    void nucleusOnALargeVocabularyMatchesASortedWalk() {
        float[] l = randomLogits(8_000, 12, 1.5);
        double temperature = 0.9;
        double topP = 0.6;
        // Reference: sort by (logit desc, id asc), walk until the mass reaches topP.
        Integer[] order = new Integer[l.length];
        double total = 0;
        float max = l[Sampler.argmax(l, 0, l.length)];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
            total += Math.exp((l[i] - max) / temperature);
        }
        Arrays.sort(order, (x, y) -> l[x] != l[y] ? Float.compare(l[y], l[x]) : Integer.compare(x, y));
        Set<Integer> nucleus = new HashSet<>();
        double cum = 0;
        for (int id : order) {
            nucleus.add(id);
            cum += Math.exp((l[id] - max) / temperature);
            if (cum >= topP * total) {
                break;
            }
        }
        assertThat(nucleus.size()).isBetween(100, 3_000);
        Sampler s = new Sampler(l.length);
        RandomGenerator r = Sampler.newRandom(99);
        SamplingParams p = new SamplingParams(temperature, 0, topP, 0.0, 99);
        Set<Integer> seen = new HashSet<>();
        for (int i = 0; i < 5_000; i++) {
            seen.add(s.sample(l, p, r));
        }
        assertThat(nucleus).containsAll(seen);
        // Nearly all of the nucleus (673 tokens) turns up; its least likely members may not, in 5k draws.
        assertThat(seen.size()).isGreaterThan(nucleus.size() * 9 / 10);
    }

    @Test
    void heapSortSortsKeys() {
        SplittableRandom r = new SplittableRandom(4);
        long[] a = new long[1_000];
        for (int i = 0; i < a.length; i++) {
            a[i] = Sampler.key((float) r.nextGaussian(), i);
        }
        long[] expected = a.clone();
        Arrays.sort(expected);
        Sampler.heapSort(a, 0, a.length);
        assertThat(a).containsExactly(expected);
        // Keys order by logit descending, then id ascending.
        assertThat(Sampler.key(2f, 5)).isLessThan(Sampler.key(1f, 0));
        assertThat(Sampler.key(1f, 0)).isLessThan(Sampler.key(1f, 1));
        assertThat(Sampler.key(-1f, 0)).isGreaterThan(Sampler.key(1f, 9));
        assertThat(Sampler.key(Float.NEGATIVE_INFINITY, 0)).isGreaterThan(Sampler.key(-1e30f, 9));
    }

    @Test
    void doesNotAllocatePerCall() {
        var bean = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        float[] l = randomLogits(32_000, 1);
        Sampler s = new Sampler(l.length);
        RandomGenerator r = Sampler.newRandom(1);
        SamplingParams[] ps = {new SamplingParams(0.8, 40, 0.95, 0.05, 1), new SamplingParams(1.0, 0, 0.9, 0.0, 1),
            SamplingParams.temperature(1.0, 1), SamplingParams.GREEDY};
        int sink = 0;
        for (int warm = 0; warm < 200; warm++) {
            for (SamplingParams p : ps) {
                sink += s.sample(l, p, r);
            }
        }
        long before = bean.getCurrentThreadAllocatedBytes();
        for (int i = 0; i < 200; i++) {
            for (SamplingParams p : ps) {
                sink += s.sample(l, p, r);
            }
        }
        long allocated = bean.getCurrentThreadAllocatedBytes() - before;
        assertThat(sink).isNotNegative();
        assertThat(allocated).as("bytes allocated by 800 calls").isLessThan(64 * 1024);
    }

    private static int[] draw(Sampler s, float[] l, SamplingParams p, int n) {
        RandomGenerator r = Sampler.newRandom(p.seed());
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = s.sample(l, p, r);
        }
        return out;
    }

    private static float[] randomLogits(int n, long seed) {
        return randomLogits(n, seed, 3.0);
    }

    private static float[] randomLogits(int n, long seed, double scale) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] l = new float[n];
        for (int i = 0; i < n; i++) {
            l[i] = (float) (r.nextGaussian() * scale);
        }
        return l;
    }
}
