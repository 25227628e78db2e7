package io.epserve.engine;

import io.epserve.model.sampling.SamplingParams;
import java.util.Set;

/**
 * One request to generate: its prompt as token ids, how to sample, when to stop. Stop strings
 * are the API layer's business (they need detokenized text); it calls
 * {@link RequestHandle#finish} when one matches.
 *
 * @param stopTokenIds tokens that end the sequence (EOS ids; ignored when {@code ignoreEos})
 */
public record GenerationRequest(String id, int[] prompt, SamplingParams sampling, int maxTokens, boolean ignoreEos,
                                Set<Integer> stopTokenIds) {
    public GenerationRequest {
        if (prompt.length == 0) {
            throw new IllegalArgumentException("the prompt is empty");
        }
        if (maxTokens < 1) {
            throw new IllegalArgumentException("max_tokens must be at least 1, got " + maxTokens);
        }
        prompt = prompt.clone();
        stopTokenIds = Set.copyOf(stopTokenIds);
    }
}
