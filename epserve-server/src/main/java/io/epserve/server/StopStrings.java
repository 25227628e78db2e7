package io.epserve.server;

import java.util.List;

/**
 * Matches the request's stop strings on the generated text as it streams, across token
 * boundaries. Text is released only when it can no longer be the start of a stop string: the
 * longest tail of the text that is a proper prefix of some stop string is held back until the
 * next piece shows whether it completes one. When a stop string completes, the text before it
 * is released and the stop string itself and anything after it are dropped (as OpenAI does).
 *
 * <p>Why holding the longest such tail suffices: a stop string that starts at position s of the
 * text and ends in a later piece had, when the text ended before it, the text from s as a proper
 * prefix; so s lay inside the held tail and the match is found in the held text.
 *
 * <p>One per sequence; not thread-safe.
 */
final class StopStrings {
    private final List<String> stops;
    private final StringBuilder held = new StringBuilder();
    private boolean matched;

    StopStrings(List<String> stops) {
        this.stops = List.copyOf(stops);
    }

    boolean isEmpty() {
        return stops.isEmpty();
    }

    /** Whether a stop string has completed (then nothing more is released). */
    boolean matched() {
        return matched;
    }

    /** Adds generated text; returns the text that is now final (possibly empty). */
    String push(String piece) {
        if (matched) {
            return "";
        }
        if (stops.isEmpty()) {
            return piece;
        }
        held.append(piece);
        int at = -1;
        for (String s : stops) {
            int i = held.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) {
                at = i;
            }
        }
        if (at >= 0) {
            matched = true;
            String out = held.substring(0, at);
            held.setLength(0);
            return out;
        }
        int keep = 0;
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, held.length()); k > keep; k--) {
                if (endsWith(held, s, k)) {
                    keep = k;
                    break;
                }
            }
        }
        String out = held.substring(0, held.length() - keep);
        held.delete(0, held.length() - keep);
        return out;
    }

    /** The sequence ended without a match: releases the held text. */
    String flush() {
        if (matched) {
            return "";
        }
        String out = held.toString();
        held.setLength(0);
        return out;
    }

    /** Whether {@code text} ends with the first {@code k} chars of {@code s}. */
    private static boolean endsWith(StringBuilder text, String s, int k) {
        int off = text.length() - k;
        for (int i = 0; i < k; i++) {
            if (text.charAt(off + i) != s.charAt(i)) {
                return false;
            }
        }
        return true;
    }
}
