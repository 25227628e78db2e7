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
                    if (t.singleWord() && ((i > 0 && isWordChar(text.charAt(i - 1)))
                            || (end < len && isWordChar(text.charAt(end))))) {
                        continue;
                    }
                    int mStart = i;
                    int mEnd = end;
                    if (t.lstrip()) {
                        while (mStart > segStart && Character.isWhitespace(text.charAt(mStart - 1))) {
                            mStart--;
                        }
                    }
                    if (t.rstrip()) {
                        while (mEnd < len && Character.isWhitespace(text.charAt(mEnd))) {
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

    private static boolean isWordChar(char c) {
        return Character.isLetterOrDigit(c) || c == '_';
    }
}
