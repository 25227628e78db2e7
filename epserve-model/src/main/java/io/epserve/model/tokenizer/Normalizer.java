package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code normalizer} of {@code tokenizer.json}: a rewrite of each stretch of text between
 * added tokens before it is pre-tokenized. Only the kinds used by decoder LLM checkpoints are
 * here; anything else is refused at load with a {@link TokenizerException}.
 */
sealed interface Normalizer {
    String apply(String text);

    /** Unicode normalization form NFC, NFD, NFKC or NFKD. */
    record Unicode(java.text.Normalizer.Form form) implements Normalizer {
        @Override
        public String apply(String text) {
            return java.text.Normalizer.normalize(text, form);
        }
    }

    record Lowercase() implements Normalizer {
        @Override
        public String apply(String text) {
            return text.toLowerCase(Locale.ROOT);
        }
    }

    /** Puts {@code prepend} in front of non-empty text (sentencepiece's dummy prefix "▁"). */
    record Prepend(String prepend) implements Normalizer {
        @Override
        public String apply(String text) {
            return text.isEmpty() ? text : prepend + text;
        }
    }

    /** Replaces every match of a literal or a regex (e.g. " " by "▁"). */
    record Replace(Pattern pattern, String content) implements Normalizer {
        @Override
        public String apply(String text) {
            return pattern.matcher(text).replaceAll(Matcher.quoteReplacement(content));
        }
    }

    record Strip(boolean left, boolean right) implements Normalizer {
        @Override
        public String apply(String text) {
            int s = 0;
            int e = text.length();
            while (left && s < e && AddedTokenMatcher.isWhiteSpace(text.charAt(s))) {
                s++;
            }
            while (right && e > s && AddedTokenMatcher.isWhiteSpace(text.charAt(e - 1))) {
                e--;
            }
            return text.substring(s, e);
        }
    }

    record Sequence(List<Normalizer> steps) implements Normalizer {
        @Override
        public String apply(String text) {
            for (Normalizer n : steps) {
                text = n.apply(text);
            }
            return text;
        }
    }

    /** Null for a JSON null or missing node (no normalization). */
    static Normalizer parse(JsonNode node, String file) {
        if (node == null || node.isNull()) {
            return null;
        }
        String type = node.path("type").asText("");
        return switch (type) {
            case "NFC" -> new Unicode(java.text.Normalizer.Form.NFC);
            case "NFD" -> new Unicode(java.text.Normalizer.Form.NFD);
            case "NFKC" -> new Unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD" -> new Unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase" -> new Lowercase();
            case "Prepend" -> new Prepend(node.path("prepend").asText());
            case "Replace" -> new Replace(
                    Json.pattern(node.path("pattern"), file + ": normalizer Replace"), node.path("content").asText());
            case "Strip" -> new Strip(node.path("strip_left").asBoolean(true), node.path("strip_right").asBoolean(true));
            case "Sequence" -> {
                List<Normalizer> steps = new ArrayList<>();
                for (JsonNode child : node.path("normalizers")) {
                    Normalizer n = parse(child, file);
                    if (n != null) {
                        steps.add(n);
                    }
                }
                yield new Sequence(List.copyOf(steps));
            }
            default -> throw new TokenizerException(file + ": unsupported normalizer type \"" + type
                    + "\" (supported: NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip, Sequence)");
        };
    }
}
