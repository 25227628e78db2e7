package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.tensor.ScalarKernels;
import io.epserve.tensor.Tensor;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class InProcessDispatcherTest {
    static final int H = 24;
    static final int I = 40;
    static final int E = 6;

    static Tensor random(SplittableRandom r, String name, int rows, int cols) {
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) r.nextGaussian() * 0.3f;
        }
        return Tensor.ofFloats(name, v, rows, cols);
    }

    static ExpertStore store(long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        ExpertWeights[] ws = new ExpertWeights[E];
        for (int e = 0; e < E; e++) {
            ws[e] = new ExpertWeights(random(r, "g" + e, I, H), random(r, "u" + e, I, H), random(r, "d" + e, H, I));
        }
        return (layer, e) -> ws[e];
    }

    /** The definition: each token through each chosen expert alone, weighted, summed. */
    static float[] naive(ExpertStore s, float[] x, RoutingResult r) {
        float[] out = new float[r.tokens() * H];
        for (int t = 0; t < r.tokens(); t++) {
            for (int j = 0; j < r.k(); j++) {
                ExpertWeights w = s.expert(0, r.expert(t, j));
                float[] g = new float[I];
                float[] u = new float[I];
                ScalarKernels.matmul(x, t * H, 1, w.gate(), g, 0);
                ScalarKernels.matmul(x, t * H, 1, w.up(), u, 0);
                ScalarKernels.siluMul(g, 0, u, 0, g, 0, I);
                float[] y = new float[H];
                ScalarKernels.matmul(g, 0, 1, w.down(), y, 0);
                ScalarKernels.axpy(r.weight(t, j), y, 0, out, t * H, H);
            }
        }
        return out;
    }

    @Test
    void groupedDispatchEqualsPerTokenDefinition() {
        ExpertStore s = store(1);
        SplittableRandom rnd = new SplittableRandom(2);
        int tokens = 13;
        float[] x = new float[tokens * H];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        float[] logits = new float[tokens * E];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) rnd.nextGaussian();
        }
        RoutingResult r = new SoftmaxTopKRouter(E, 3, true).route(logits, new int[tokens], tokens);
        float[] out = new float[tokens * H];
        new InProcessDispatcher(s, E).dispatch(0, x, H, r, out);
        float[] want = naive(s, x, r);
        for (int i = 0; i < out.length; i++) {
            assertThat(out[i]).as("element %d", i).isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-4f));
        }
    }

    @Test
    void combineDoesNotDependOnSlotOrder() {
        int tokens = 3;
        int k = 3;
        float[] slotOut = new float[tokens * k * H];
        SplittableRandom rnd = new SplittableRandom(5);
        for (int i = 0; i < slotOut.length; i++) {
            slotOut[i] = (float) rnd.nextGaussian() * 1e3f;
        }
        int[] experts = {4, 1, 2, 0, 5, 3, 2, 3, 1};
        float[] weights = {0.1f, 0.7f, 0.2f, 0.3f, 0.3f, 0.4f, 0.5f, 0.25f, 0.25f};
        float[] a = new float[tokens * H];
        Combine.weightedSum(new RoutingResult(tokens, k, experts, weights), slotOut, H, a);
        // the same routing with the slots of every token permuted
        int[] experts2 = new int[9];
        float[] weights2 = new float[9];
        float[] slotOut2 = new float[slotOut.length];
        int[] perm = {2, 0, 1};
        for (int t = 0; t < tokens; t++) {
            for (int j = 0; j < k; j++) {
                int src = t * k + perm[j];
                experts2[t * k + j] = experts[src];
                weights2[t * k + j] = weights[src];
                System.arraycopy(slotOut, src * H, slotOut2, (t * k + j) * H, H);
            }
        }
        float[] b = new float[tokens * H];
        Combine.weightedSum(new RoutingResult(tokens, k, experts2, weights2), slotOut2, H, b);
        assertThat(b).containsExactly(a);
    }
}
