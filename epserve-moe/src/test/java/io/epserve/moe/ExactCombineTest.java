package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class ExactCombineTest {
    @Test
    void anyGroupingOfTheTermsGivesTheSameBitsCloseToTheExactSum() {
        SplittableRandom r = new SplittableRandom(1);
        int n = 64;
        for (int trial = 0; trial < 200; trial++) {
            float[] x = new float[n];
            for (int i = 0; i < n; i++) {
                x[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(-3, 3)));
            }
            int grid = ExactCombine.gridExponent(x, 0, n);
            int k = 8;
            float[][] y = new float[k][n];
            float[] w = new float[k];
            for (int j = 0; j < k; j++) {
                w[j] = (float) r.nextDouble();
                for (int i = 0; i < n; i++) {
                    y[j][i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(-4, 2)));
                }
            }
            // all terms on one worker, in order
            long[] one = new long[n];
            for (int j = 0; j < k; j++) {
                ExactCombine.accumulate(w[j], y[j], 0, one, 0, n, grid);
            }
            // a random split over 3 workers, added in reverse worker order
            long[][] parts = new long[3][n];
            for (int j = k - 1; j >= 0; j--) {
                ExactCombine.accumulate(w[j], y[j], 0, parts[r.nextInt(3)], 0, n, grid);
            }
            long[] split = new long[n];
            for (int p = 2; p >= 0; p--) {
                for (int i = 0; i < n; i++) {
                    split[i] += parts[p][i];
                }
            }
            float[] a = new float[n];
            float[] b = new float[n];
            ExactCombine.toFloat(one, 0, n, grid, a, 0);
            ExactCombine.toFloat(split, 0, n, grid, b, 0);
            float max = 0;
            for (float v : x) {
                max = Math.max(max, Math.abs(v));
            }
            for (int i = 0; i < n; i++) {
                assertThat(Float.floatToRawIntBits(b[i])).isEqualTo(Float.floatToRawIntBits(a[i]));
                double exact = 0;
                for (int j = 0; j < k; j++) {
                    exact += (double) w[j] * y[j][i];
                }
                // k terms each within half a grid step, plus the one rounding to float
                assertThat(Math.abs(a[i] - exact)).isLessThanOrEqualTo(k * Math.scalb(1.0, grid - 1) + Math.ulp((float) exact));
            }
        }
    }

    @Test
    void termsOutsideTheRangeFailLoudly() {
        float[] x = {1e-6f, 0f};
        int grid = ExactCombine.gridExponent(x, 0, 2);
        long[] acc = new long[2];
        assertThatThrownBy(() -> ExactCombine.accumulate(1f, new float[] {1e6f, 0f}, 0, acc, 0, 2, grid))
                .isInstanceOf(ArithmeticException.class).hasMessageContaining("outside the exact combine's range");
        assertThatThrownBy(() -> ExactCombine.gridExponent(new float[] {Float.NaN}, 0, 1)).hasMessageContaining("not finite");
        assertThat(ExactCombine.fitsInt(new long[] {Integer.MAX_VALUE, Integer.MIN_VALUE}, 2)).isTrue();
        assertThat(ExactCombine.fitsInt(new long[] {1L << 31}, 1)).isFalse();
    }
}
