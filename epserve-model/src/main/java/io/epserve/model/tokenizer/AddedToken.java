package io.epserve.model.tokenizer;

/**
 * A token matched verbatim in the input before any normalization or BPE (HF {@code AddedToken}).
 *
 * @param lstrip     absorb whitespace just before a match
 * @param rstrip     absorb whitespace just after a match
 * @param singleWord match only where not inside a word
 * @param special    a control token (bos, eos, chat markers): skipped by decode when asked,
 *                   and not matched by {@link Tokenizer#encode(String, boolean)} with
 *                   {@code parseSpecial = false}
 */
public record AddedToken(int id, String content, boolean special, boolean lstrip, boolean rstrip,
                         boolean singleWord, boolean normalized) {
    public AddedToken {
        if (content == null || content.isEmpty()) {
            throw new IllegalArgumentException("added token " + id + " has empty content");
        }
    }
}
