package io.epserve.model.sampling;

/**
 * How the next token is chosen from the logits, as in the OpenAI / vLLM request fields.
 *
 * @param temperature logits are divided by it; {@code 0} (or a value too small to divide by) means greedy (argmax, ties to the
 *                    lowest id) and makes the other fields irrelevant
 * @param topK        keep the {@code topK} most likely tokens (and any tied with the last);
 *                    {@code 0} (or {@code -1}, vLLM's spelling, stored as 0) turns it off
 * @param topP        nucleus: keep the most likely tokens whose probabilities first add up to at
 *                    least {@code topP}; {@code 1} turns it off; in (0, 1]
 * @param minP        drop tokens whose probability is below {@code minP} times the top
 *                    token's; {@code 0} turns it off; in [0, 1]
 * @param seed        seed of the sequence's random generator: the same seed, logits and
 *                    parameters give the same tokens (see {@link Sampler#newRandom(long)})
 */
public record SamplingParams(double temperature, int topK, double topP, double minP, long seed) {

    /** Argmax decoding. */
    public static final SamplingParams GREEDY = new SamplingParams(0.0, 0, 1.0, 0.0, 0L);

    public SamplingParams {
        if (!(temperature >= 0.0) || Double.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be a finite number >= 0 (0 = greedy), got " + temperature);
        }
        if (topK < -1) {
            throw new IllegalArgumentException("topK must be >= 1, or 0 / -1 to disable it, got " + topK);
        }
        if (topK == -1) {
            topK = 0;
        }
        if (!(topP > 0.0 && topP <= 1.0)) {
            throw new IllegalArgumentException("topP must be in (0, 1] (1 = disabled), got " + topP);
        }
        if (!(minP >= 0.0 && minP <= 1.0)) {
            throw new IllegalArgumentException("minP must be in [0, 1] (0 = disabled), got " + minP);
        }
    }

    /** Pure temperature sampling: no top-k, top-p or min-p. */
    public static SamplingParams temperature(double temperature, long seed) {
        return new SamplingParams(temperature, 0, 1.0, 0.0, seed);
    }

    /**
     * True for temperature 0, and for a temperature so small that dividing by it overflows
     * (below about 5.6e-309): every logit but the largest would weigh 0, which is the argmax.
     */
    public boolean isGreedy() {
        return temperature == 0.0 || Double.isInfinite(1.0 / temperature);
    }

    public SamplingParams withSeed(long newSeed) {
        return new SamplingParams(temperature, topK, topP, minP, newSeed);
    }
}
