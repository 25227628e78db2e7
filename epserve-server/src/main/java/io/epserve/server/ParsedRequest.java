package io.epserve.server;

import io.epserve.model.sampling.SamplingParams;
import java.util.List;

/**
 * A checked generation request: the prompt as token ids and everything the engine and the
 * response need.
 *
 * @param ignoreEos         the {@code ignore_eos} extension (vLLM's): generate max tokens whatever the model says
 * @param skipSpecialTokens leave special tokens out of the text (default true, as vLLM)
 * @param returnTokenIds    the {@code return_token_ids} extension (vLLM's): each choice also carries the ids of
 *                          the tokens its text came from ({@code token_ids}), and the response the prompt's
 *                          ({@code prompt_token_ids})
 */
record ParsedRequest(Endpoint endpoint, int[] prompt, SamplingParams sampling, int maxTokens, List<String> stop,
                     boolean stream, boolean includeUsage, boolean ignoreEos, boolean skipSpecialTokens,
                     boolean returnTokenIds) {}
