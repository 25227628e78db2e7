package io.epserve.model.tokenizer;

/**
 * A tokenizer file that cannot be used: unreadable, malformed, or asking for a component
 * (model type, normalizer, pre-tokenizer, decoder) that this implementation does not support.
 * The message names the file and the offending thing.
 */
public final class TokenizerException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public TokenizerException(String message) {
        super(message);
    }

    public TokenizerException(String message, Throwable cause) {
        super(message, cause);
    }
}
