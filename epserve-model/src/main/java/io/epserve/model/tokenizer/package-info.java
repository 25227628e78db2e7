/**
 * Hugging Face {@code tokenizer.json} support: {@link io.epserve.model.tokenizer.Tokenizer}
 * (load, encode, decode, bos/eos), {@link io.epserve.model.tokenizer.StreamingDecoder}
 * (incremental detokenization that never splits a UTF-8 char) and
 * {@link io.epserve.model.tokenizer.DemoTokenizer} (the built-in demo model's vocabulary).
 *
 * <p>Supported: BPE models with the byte-level pipeline (GPT-2, Llama 3, Qwen, OLMoE,
 * DeepSeek) and the sentencepiece conversion with "▁" and byte fallback (Llama 2, Mistral,
 * Mixtral). Anything else fails at load with a {@link io.epserve.model.tokenizer.TokenizerException}
 * naming the file and the component.
 */
package io.epserve.model.tokenizer;
