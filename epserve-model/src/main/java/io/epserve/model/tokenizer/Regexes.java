package io.epserve.model.tokenizer;

import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Turns the regexes found in {@code tokenizer.json} (written for Oniguruma, which Hugging Face
 * tokenizers uses) into {@link java.util.regex.Pattern}s with the same meaning.
 *
 * <p>The common patterns (GPT-2, Llama-3, Qwen2, DeepSeek-V3) need only two things: Unicode
 * meaning for {@code \s}, {@code \w}, {@code \d} and case folding, which
 * {@link Pattern#UNICODE_CHARACTER_CLASS} gives; and a few spelling differences, rewritten here:
 * <ul>
 *   <li>{@code \p{Han}} (a script name without prefix) becomes {@code \p{IsHan}};
 *       {@code \p{^X}} (Oniguruma negation) becomes {@code \P{X}}.</li>
 *   <li>{@code \h} / {@code \H} mean hex digit / non-hex-digit in Oniguruma but horizontal
 *       space in Java; they become explicit classes.</li>
 * </ul>
 * Lookahead, possessive and lazy quantifiers, {@code (?i:...)} groups and nested classes are
 * spelled alike in both.
 */
final class Regexes {
    private Regexes() {}

    static Pattern compile(String onigPattern, String where) {
        String java = translate(onigPattern);
        try {
            return Pattern.compile(java, Pattern.UNICODE_CHARACTER_CLASS);
        } catch (PatternSyntaxException e) {
            throw new TokenizerException(where + ": regex " + quote(onigPattern)
                    + " cannot be used (as Java regex " + quote(java) + "): " + e.getDescription(), e);
        }
    }

    static String translate(String p) {
        StringBuilder out = new StringBuilder(p.length() + 16);
        int classDepth = 0;
        for (int i = 0; i < p.length(); i++) {
            char c = p.charAt(i);
            if (c == '\\' && i + 1 < p.length()) {
                char n = p.charAt(i + 1);
                if ((n == 'p' || n == 'P') && i + 2 < p.length() && p.charAt(i + 2) == '{') {
                    int close = p.indexOf('}', i + 3);
                    if (close > 0) {
                        String name = p.substring(i + 3, close);
                        boolean negate = n == 'P';
                        if (name.startsWith("^")) {
                            negate = !negate;
                            name = name.substring(1);
                        }
                        out.append('\\').append(negate ? 'P' : 'p').append('{').append(javaProperty(name)).append('}');
                        i = close;
                        continue;
                    }
                }
                if (n == 'h' || n == 'H') {
                    String hex = "0-9a-fA-F";
                    if (classDepth > 0) {
                        if (n == 'H') {
                            // A negated set inside a class: Java nests classes, so this stays exact.
                            out.append("[^").append(hex).append(']');
                        } else {
                            out.append(hex);
                        }
                    } else {
                        out.append(n == 'h' ? "[" + hex + "]" : "[^" + hex + "]");
                    }
                    i++;
                    continue;
                }
                out.append(c).append(n);
                i++;
                continue;
            }
            if (c == '[') {
                classDepth++;
            } else if (c == ']' && classDepth > 0) {
                classDepth--;
            }
            out.append(c);
        }
        return out.toString();
    }

    /** A property name as Java spells it: general categories and POSIX names as is, scripts as IsX. */
    private static String javaProperty(String name) {
        if (compiles("\\p{" + name + "}")) {
            return name;
        }
        String script = "Is" + name;
        if (compiles("\\p{" + script + "}")) {
            return script;
        }
        return name; // let the real compile report it, with the pattern in the message
    }

    private static boolean compiles(String p) {
        try {
            Pattern.compile(p);
            return true;
        } catch (PatternSyntaxException e) {
            return false;
        }
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '"' -> b.append("\\\"");
                default -> b.append(c);
            }
        }
        return b.append('"').toString();
    }
}
