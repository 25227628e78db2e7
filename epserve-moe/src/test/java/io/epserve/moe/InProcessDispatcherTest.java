package io.epserve.moe;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.tensor.ScalarKernels;
import io.epserve.tensor.Tensor;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
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
        InProcessDispatcher.single(s, new boolean[] {true}, E).dispatch(0, x, H, r, out);
        float[] want = naive(s, x, r);
        for (int i = 0; i < out.length; i++) {
            assertThat(out[i]).as("element %d", i).isCloseTo(want[i], org.assertj.core.data.Offset.offset(1e-4f));
        }
    }

    @Test
    void resultIsTheSameForOneTwoAndFourWorkersAndBothPolicies() {
        ExpertStore s = store(3);
        SplittableRandom rnd = new SplittableRandom(4);
        int tokens = 9;
        float[] x = new float[tokens * H];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        float[] logits = new float[tokens * E];
        for (int i = 0; i < logits.length; i++) {
            logits[i] = (float) rnd.nextGaussian();
        }
        RoutingResult r = new SoftmaxTopKRouter(E, 3, true).route(logits, new int[tokens], tokens);
        float[] one = new float[tokens * H];
        InProcessDispatcher.single(s, new boolean[] {true}, E).dispatch(0, x, H, r, one);
        for (var policy : ExpertPlacement.Policy.values()) {
            for (int w : new int[] {2, 4}) {
                List<String> names = IntStream.range(0, w).mapToObj(i -> "w" + i).toList();
                ExpertPlacement p = ExpertPlacement.create(new boolean[] {true}, E, names, policy, 0);
                List<ExpertWorker> workers = names.stream().map(n -> new ExpertWorker(n, s, E)).toList();
                float[] out = new float[tokens * H];
                new InProcessDispatcher(p, workers).dispatch(0, x, H, r, out);
                for (int i = 0; i < out.length; i++) {
                    assertThat(out[i]).as("%s %d workers element %d", policy, w, i)
                            .isCloseTo(one[i], org.assertj.core.data.Offset.offset(1e-5f));
                }
            }
        }
    }
}
