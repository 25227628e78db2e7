package io.epserve.model.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Finds added tokens in raw text, leftmost first and longest first at a position (the
 * leftmost-longest rule of HF's Aho-Corasick matcher), honouring {@code lstrip}, {@code rstrip}
 * and {@code single_word}.
 */
final class AddedTokenMatcher {
    /** A stretch of input: an added token ({@code token != null}) or plain text. */
    record Segment(int start, int end, AddedToken token) {}

    private final Map<Character, AddedToken[]> byFirstChar = new HashMap<>();

    AddedTokenMatcher(List<AddedToken> tokens) {
        Map<Character, List<AddedToken>> groups = new HashMap<>();
        for (AddedToken t : tokens) {
            groups.computeIfAbsent(t.content().charAt(0), c -> new ArrayList<>()).add(t);
        }
        for (Map.Entry<Character, List<AddedToken>> e : groups.entrySet()) {
            List<AddedToken> l = e.getValue();
            l.sort(Comparator.comparingInt((AddedToken t) -> -t.content().length()).thenComparingInt(AddedToken::id));
            byFirstChar.put(e.getKey(), l.toArray(AddedToken[]::new));
        }
    }

    boolean isEmpty() {
        return byFirstChar.isEmpty();
    }

    List<Segment> split(String text) {
        List<Segment> out = new ArrayList<>();
        int len = text.length();
        int segStart = 0;
        int i = 0;
        outer:
        while (i < len) {
            AddedToken[] candidates = byFirstChar.get(text.charAt(i));
            if (candidates != null) {
                for (AddedToken t : candidates) {
                    int end = i + t.content().length();
                    if (!text.startsWith(t.content(), i)) {
                        continue;
                    }
                    if (t.singleWord() && ((i > 0 && isWordChar(text.codePointBefore(i)))
                            || (end < len && isWordChar(text.codePointAt(end))))) {
                        continue;
                    }
                    int mStart = i;
                    int mEnd = end;
                    if (t.lstrip()) {
                        while (mStart > segStart && isWhiteSpace(text.charAt(mStart - 1))) {
                            mStart--;
                        }
                    }
                    if (t.rstrip()) {
                        while (mEnd < len && isWhiteSpace(text.charAt(mEnd))) {
                            mEnd++;
                        }
                    }
                    if (mStart > segStart) {
                        out.add(new Segment(segStart, mStart, null));
                    }
                    out.add(new Segment(mStart, mEnd, t));
                    segStart = mEnd;
                    i = mEnd;
                    continue outer;
                }
            }
            i++;
        }
        if (segStart < len) {
            out.add(new Segment(segStart, len, null));
        }
        return out;
    }

    /**
     * Unicode {@code \w} as Rust's regex (and so HF's single_word check) defines it: alphabetic,
     * marks, decimal digits, connector punctuation, joiners.
     */
    static boolean isWordChar(int cp) {
        if (Character.isAlphabetic(cp)) {
            return true;
        }
        return switch (Character.getType(cp)) {
            case Character.NON_SPACING_MARK, Character.ENCLOSING_MARK, Character.COMBINING_SPACING_MARK,
                 Character.DECIMAL_DIGIT_NUMBER, Character.CONNECTOR_PUNCTUATION -> true;
            default -> cp == 0x200C || cp == 0x200D;
        };
    }

    /**
     * The Unicode White_Space property, as Rust's {@code char::is_whitespace} (used by HF for
     * lstrip/rstrip and the Strip normalizer): unlike {@link Character#isWhitespace(char)} it
     * includes no-break spaces and U+0085, and excludes U+001C..U+001F.
     */
    static boolean isWhiteSpace(char c) {
        return (c >= '\t' && c <= '\r') || c == '\u0085' || Character.isSpaceChar(c);
    }
}
