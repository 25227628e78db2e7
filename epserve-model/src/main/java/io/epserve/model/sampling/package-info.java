/**
 * Next-token selection: {@link io.epserve.model.sampling.SamplingParams} (a validated record of
 * the request's temperature, top-k, top-p, min-p and seed) and
 * {@link io.epserve.model.sampling.Sampler} (greedy or seeded random choice over one row of
 * logits, without allocation on the hot path).
 */
package io.epserve.model.sampling;
