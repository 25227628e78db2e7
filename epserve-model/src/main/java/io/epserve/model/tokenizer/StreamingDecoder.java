package io.epserve.model.tokenizer;

import java.nio.charset.StandardCharsets;

/**
 * Turns one sequence's tokens into text as they are generated. {@link #push(int)} returns only
 * text that is final: a UTF-8 char whose bytes are spread over several tokens (byte-level or
 * byte-fallback tokens of an emoji, say) is held back until its last byte arrives, so a client
 * never sees a broken char. Bytes that can never form a char come out as U+FFFD, as in
 * {@link Tokenizer#decode(int[])}.
 *
 * <p>The concatenation of everything returned by {@code push} and {@link #flush()} equals
 * {@code tokenizer.decode(ids, skipSpecial)} for the same ids, except that a decoder's trailing
 * strip (none of the supported checkpoints has one) is not applied.
 *
 * <p>One per sequence; not thread-safe.
 */
public final class StreamingDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private final Tokenizer.ByteBuf pending = new Tokenizer.ByteBuf(16);
    private int leadingToStrip;
    private boolean anyToken;

    StreamingDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
        this.leadingToStrip = tokenizer.decoder.stripStart;
    }

    /** Adds one token; returns the text completed by it (often empty, never null). */
    public String push(int id) {
        tokenizer.checkId(id);
        if (skipSpecial && tokenizer.specialUnchecked(id)) {
            return "";
        }
        if (tokenizer.decoder.joinWithSpace && anyToken) {
            pending.add((byte) ' ');
        }
        anyToken = true;
        pending.add(tokenizer.bytesOf(id));
        return emit(completeLength(pending.bytes(), pending.size()));
    }

    /** Returns whatever is held back (incomplete chars become U+FFFD) and empties the buffer. */
    public String flush() {
        return emit(pending.size());
    }

    /** Starts a new sequence. */
    public void reset() {
        pending.clear();
        leadingToStrip = tokenizer.decoder.stripStart;
        anyToken = false;
    }

    private String emit(int n) {
        if (n == 0) {
            return "";
        }
        String s = new String(pending.bytes(), 0, n, StandardCharsets.UTF_8);
        pending.consume(n);
        String content = tokenizer.decoder.stripContent;
        while (leadingToStrip > 0 && !s.isEmpty()) {
            if (s.startsWith(content)) {
                s = s.substring(content.length());
                leadingToStrip--;
            } else {
                leadingToStrip = 0;
            }
        }
        return s;
    }

    /**
     * Length of the prefix of {@code b[0..n)} that ends on a char boundary: the bytes of a
     * multi-byte char whose lead byte is among the last three and whose continuation bytes have
     * not all arrived are excluded.
     */
    static int completeLength(byte[] b, int n) {
        for (int back = 1; back <= Math.min(3, n); back++) {
            int x = b[n - back] & 0xFF;
            if ((x & 0xC0) == 0x80) {
                continue; // continuation byte: look further back for the lead
            }
            int need = x >= 0xC2 && x <= 0xDF ? 2 : x >= 0xE0 && x <= 0xEF ? 3 : x >= 0xF0 && x <= 0xF4 ? 4 : 1;
            return need > back ? n - back : n;
        }
        return n;
    }
}
