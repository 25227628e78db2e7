package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.Test;

/** RowAttention against the scalar attention and a float64 reference with sinks; bf16 storage against its float values. */
class RowAttentionTest {
    static final int HEADS = 6;
    static final int KV_HEADS = 2;
    static final int HD_K = 12;
    static final int HD_V = 10;
    static final int KS = KV_HEADS * HD_K + 3;
    static final int VS = KV_HEADS * HD_V + 1;
    static final int ROWS = 40;
    static final int N_KEYS = 17;

    final SplittableRandom r = new SplittableRandom(5);

    float[] random(int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (r.nextDouble() * 2 - 1);
        }
        return a;
    }

    int[] rows() {
        int[] rows = new int[N_KEYS];
        for (int t = 0; t < N_KEYS; t++) {
            rows[t] = (t * 7 + 3) % ROWS;
        }
        return rows;
    }

    @Test
    void withoutSinksItIsTheScalarKernel() {
        float[] q = random(HEADS * HD_K);
        float[] keys = random(ROWS * KS);
        float[] values = random(ROWS * VS);
        float[] want = new float[HEADS * HD_V];
        ScalarKernels.attentionRows(q, 0, keys, values, rows(), KS, VS, N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, want, 0,
                new float[N_KEYS]);
        float[] got = new float[HEADS * HD_V + 4];
        RowAttention.attend(q, 0, keys, values, rows(), KS, VS, N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, null, got, 4);
        for (int i = 0; i < want.length; i++) {
            assertThat(got[4 + i]).isCloseTo(want[i], Offset.offset(1e-6f));
        }
    }

    @Test
    void sinksJoinTheDenominatorAndAddNoValue() {
        float[] q = random(HEADS * HD_K);
        float[] keys = random(ROWS * KS);
        float[] values = random(ROWS * VS);
        float[] sinks = random(HEADS);
        sinks[0] = 3f; // a strong sink shrinks head 0's output
        int[] rows = rows();
        float[] got = new float[HEADS * HD_V];
        RowAttention.attend(q, 0, keys, values, rows, KS, VS, N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, sinks, got, 0);
        for (int h = 0; h < HEADS; h++) {
            int g = h / (HEADS / KV_HEADS);
            double[] s = new double[N_KEYS];
            double max = sinks[h];
            for (int t = 0; t < N_KEYS; t++) {
                double d = 0;
                for (int i = 0; i < HD_K; i++) {
                    d += (double) q[h * HD_K + i] * keys[rows[t] * KS + g * HD_K + i];
                }
                s[t] = d * 0.3;
                max = Math.max(max, s[t]);
            }
            double sum = Math.exp(sinks[h] - max);
            for (int t = 0; t < N_KEYS; t++) {
                sum += Math.exp(s[t] - max);
            }
            for (int i = 0; i < HD_V; i++) {
                double o = 0;
                for (int t = 0; t < N_KEYS; t++) {
                    o += Math.exp(s[t] - max) / sum * values[rows[t] * VS + g * HD_V + i];
                }
                assertThat((double) got[h * HD_V + i]).as("head %d dim %d", h, i).isCloseTo(o, Offset.offset(1e-5));
            }
        }
    }

    @Test
    void bf16StorageComputesOnTheStoredValues() {
        float[] q = random(HEADS * HD_K);
        float[] keys = random(ROWS * KS);
        float[] values = random(ROWS * VS);
        short[] k16 = new short[keys.length];
        short[] v16 = new short[values.length];
        Bf16.store(keys, 0, k16, 0, keys.length);
        Bf16.store(values, 0, v16, 0, values.length);
        float[] kr = new float[keys.length];
        float[] vr = new float[values.length];
        Bf16.load(k16, 0, kr, 0, kr.length);
        Bf16.load(v16, 0, vr, 0, vr.length);
        float[] sinks = random(HEADS);
        float[] want = new float[HEADS * HD_V];
        RowAttention.attend(q, 0, kr, vr, rows(), KS, VS, N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, sinks, want, 0);
        float[] got = new float[HEADS * HD_V];
        RowAttention.attend(q, 0, k16, v16, rows(), KS, VS, N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, sinks, got, 0);
        assertThat(got).containsExactly(want);
    }

    @Test
    void bf16RoundsToNearestEven() {
        assertThat(Bf16.toFloat(Bf16.fromFloat(1f))).isEqualTo(1f);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1)
        assertThat(Bf16.toFloat(Bf16.fromFloat(1f + 0x1p-8f))).isEqualTo(1f);
        assertThat(Bf16.toFloat(Bf16.fromFloat(1f + 0x1p-8f + 0x1p-20f))).isEqualTo(1f + 0x1p-7f);
        assertThat(Float.isNaN(Bf16.toFloat(Bf16.fromFloat(Float.NaN)))).isTrue();
        assertThat(Bf16.toFloat(Bf16.fromFloat(Float.NEGATIVE_INFINITY))).isEqualTo(Float.NEGATIVE_INFINITY);
    }

    @Test
    void sinksMustBeOnePerHead() {
        assertThatThrownBy(() -> RowAttention.attend(new float[HEADS * HD_K], 0, new float[ROWS * KS], new float[ROWS * VS], rows(), KS, VS,
                N_KEYS, HEADS, KV_HEADS, HD_K, HD_V, 1f, new float[HEADS - 1], new float[HEADS * HD_V], 0))
                .hasMessageContaining("sink logits");
    }

    @Test
    void aLongContextRunsHeadsInParallelWithTheSameResult() {
        // enough work to go parallel: 6 heads × 3000 keys × 22 dims > the serial threshold
        int keys = 3000;
        int[] rows = new int[keys];
        for (int t = 0; t < keys; t++) {
            rows[t] = (t * 7 + 3) % keys;
        }
        float[] q = random(HEADS * HD_K);
        float[] kv = random(keys * KS);
        float[] vv = random(keys * VS);
        float[] sinks = random(HEADS);
        float[] got = new float[HEADS * HD_V];
        RowAttention.attend(q, 0, kv, vv, rows, KS, VS, keys, HEADS, KV_HEADS, HD_K, HD_V, 0.3f, sinks, got, 0);
        // one head at a time (each call below the threshold) gives the same numbers
        for (int h = 0; h < HEADS; h++) {
            int g = h / (HEADS / KV_HEADS);
            float[] one = new float[HD_V];
            float[] qh = Arrays.copyOfRange(q, h * HD_K, (h + 1) * HD_K);
            float[] kh = new float[keys * HD_K];
            float[] vh = new float[keys * HD_V];
            for (int t = 0; t < keys; t++) {
                System.arraycopy(kv, t * KS + g * HD_K, kh, t * HD_K, HD_K);
                System.arraycopy(vv, t * VS + g * HD_V, vh, t * HD_V, HD_V);
            }
            RowAttention.attend(qh, 0, kh, vh, rows, HD_K, HD_V, keys, 1, 1, HD_K, HD_V, 0.3f, new float[] {sinks[h]}, one, 0);
            for (int i = 0; i < HD_V; i++) {
                assertThat(got[h * HD_V + i]).as("head %d", h).isEqualTo(one[i]);
            }
        }
    }
}
