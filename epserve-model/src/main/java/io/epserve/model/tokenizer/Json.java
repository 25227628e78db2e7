package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.regex.Pattern;

/** Small readers for the shapes that recur in {@code tokenizer.json}. */
final class Json {
    private Json() {}

    /**
     * A Split/Replace pattern: {@code {"String": "..."}} is a literal, {@code {"Regex": "..."}}
     * an Oniguruma regex (see {@link Regexes}). A bare string is taken as a literal.
     */
    static Pattern pattern(JsonNode node, String where) {
        if (node.isTextual()) {
            return Pattern.compile(Pattern.quote(node.asText()));
        }
        if (node.has("String")) {
            return Pattern.compile(Pattern.quote(node.get("String").asText()));
        }
        if (node.has("Regex")) {
            return Regexes.compile(node.get("Regex").asText(), where);
        }
        throw new TokenizerException(where + ": pattern must be {\"String\": ...} or {\"Regex\": ...}, got " + node);
    }

    /** A token given as a plain string or as an AddedToken object ({@code {"content": ...}}). */
    static String tokenContent(JsonNode node) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            return null;
        }
        if (node.isTextual()) {
            return node.asText();
        }
        JsonNode content = node.get("content");
        return content != null && content.isTextual() ? content.asText() : null;
    }
}
