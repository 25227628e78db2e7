package io.epserve.model.quant;

import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.RoutingListener;
import java.util.SplittableRandom;

/**
 * The accuracy cost of converted experts: next-token distributions of a model with its experts
 * in some dtype against the same model as stored, over a fixed token set (seeded random token
 * ids, one prefill, logits at every position).
 *
 * <ul>
 *   <li>KL divergence {@code KL(P_ref || P_q) = Σ_v p_ref(v) (log p_ref(v) − log p_q(v))} per
 *       position, in nats, from log-softmax of each model's logits (double precision);
 *       reported as mean and max over positions.</li>
 *   <li>top-1 agreement: the fraction of positions where both models' argmax token is the same.</li>
 * </ul>
 */
public final class QuantAccuracy {
    private QuantAccuracy() {}

    /** Accuracy of one model in one dtype against its reference. */
    public record Result(int positions, double meanKl, double maxKl, double top1Agreement) {}

    /** {@code n} token ids drawn uniformly from [0, vocab) with a fixed seed. */
    public static int[] tokens(int n, int vocab, long seed) {
        return new SplittableRandom(seed).ints(n, 0, vocab).toArray();
    }

    /** Logits {@code [n, vocab]} at every position of {@code tokens} (one prefill, a fresh cache). */
    public static float[] logits(LoadedModel m, int[] tokens) {
        KvCache cache = m.transformer().newCache(tokens.length);
        return m.transformer().forward(cache, tokens, tokens.length, true, RoutingListener.NONE).clone();
    }

    /** Compares logits {@code [n, vocab]} of a converted model with the reference's. */
    public static Result compare(float[] reference, float[] converted, int vocab) {
        if (reference.length != converted.length || reference.length % vocab != 0) {
            throw new IllegalArgumentException("logits of different shapes: " + reference.length + " vs " + converted.length);
        }
        int n = reference.length / vocab;
        double sum = 0;
        double max = 0;
        int agree = 0;
        double[] lp = new double[vocab];
        double[] lq = new double[vocab];
        for (int i = 0; i < n; i++) {
            logSoftmax(reference, i * vocab, vocab, lp);
            logSoftmax(converted, i * vocab, vocab, lq);
            double kl = 0;
            for (int v = 0; v < vocab; v++) {
                kl += Math.exp(lp[v]) * (lp[v] - lq[v]);
            }
            kl = Math.max(0, kl); // rounding can leave -1e-17 for identical rows
            sum += kl;
            max = Math.max(max, kl);
            if (argmax(reference, i * vocab, vocab) == argmax(converted, i * vocab, vocab)) {
                agree++;
            }
        }
        return new Result(n, sum / n, max, (double) agree / n);
    }

    static void logSoftmax(float[] x, int off, int n, double[] out) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += Math.exp(x[off + i] - max);
        }
        double lse = max + Math.log(s);
        for (int i = 0; i < n; i++) {
            out[i] = x[off + i] - lse;
        }
    }

    /** Index of the largest value, the first one on ties. */
    static int argmax(float[] x, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) {
            if (x[off + i] > x[off + best]) {
                best = i;
            }
        }
        return best;
    }
}
