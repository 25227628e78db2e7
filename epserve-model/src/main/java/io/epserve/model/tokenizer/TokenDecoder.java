package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code decoder} of {@code tokenizer.json}, reduced to the form a streaming detokenizer
 * needs: every token id becomes a fixed byte string, the output is their concatenation, and at
 * most a few leading (and, for whole-text decode only, trailing) chars are stripped.
 *
 * <p>That covers the decoders of byte-level BPE ({@code ByteLevel}) and of sentencepiece
 * conversions ({@code Sequence[Replace("▁"," "), ByteFallback, Fuse, Strip(" ",1,0)]} or
 * {@code Metaspace}), because each of their steps either acts on one token at a time
 * (Replace, ByteFallback, ByteLevel) or, after {@code Fuse}, on the start of the whole text
 * (Strip). Bytes rather than strings are concatenated, so a char split over byte-fallback or
 * byte-level tokens is rebuilt exactly as HF's ByteFallback/ByteLevel do.
 */
final class TokenDecoder {

    private sealed interface Step {
        /** {@code token} is a String, or a byte[] once a step has produced raw bytes. */
        Object apply(Object token);
    }

    private record Replace(Pattern pattern, String content) implements Step {
        @Override
        public Object apply(Object token) {
            return token instanceof String s ? pattern.matcher(s).replaceAll(Matcher.quoteReplacement(content)) : token;
        }
    }

    /** {@code <0x41>} is the byte 0x41 (sentencepiece byte fallback). */
    private record ByteFallback() implements Step {
        @Override
        public Object apply(Object token) {
            if (token instanceof String s) {
                int b = byteFallbackValue(s);
                if (b >= 0) {
                    return new byte[] {(byte) b};
                }
            }
            return token;
        }
    }

    private record ByteLevelStep() implements Step {
        @Override
        public Object apply(Object token) {
            return token instanceof String s ? ByteLevel.decode(s) : token;
        }
    }

    /** A Strip placed before Fuse acts on every token. */
    private record StripEach(String content, int start, int stop) implements Step {
        @Override
        public Object apply(Object token) {
            return token instanceof String s ? strip(s, content, start, stop) : token;
        }
    }

    private final List<Step> steps;
    /** Whole-output strip: up to {@code stripStart} leading and {@code stripStop} trailing copies of {@code stripContent}. */
    final String stripContent;
    final int stripStart;
    final int stripStop;
    /** No decoder at all: HF joins the token strings with a space. */
    final boolean joinWithSpace;

    private TokenDecoder(List<Step> steps, String stripContent, int stripStart, int stripStop, boolean joinWithSpace) {
        this.steps = steps;
        this.stripContent = stripContent;
        this.stripStart = stripStart;
        this.stripStop = stripStop;
        this.joinWithSpace = joinWithSpace;
    }

    /** The bytes token text {@code token} contributes to the output. */
    byte[] bytes(String token) {
        Object t = token;
        for (Step s : steps) {
            t = s.apply(t);
        }
        return t instanceof byte[] b ? b : ((String) t).getBytes(StandardCharsets.UTF_8);
    }

    static int byteFallbackValue(String s) {
        if (s.length() == 6 && s.startsWith("<0x") && s.charAt(5) == '>') {
            int hi = Character.digit(s.charAt(3), 16);
            int lo = Character.digit(s.charAt(4), 16);
            if (hi >= 0 && lo >= 0) {
                return hi * 16 + lo;
            }
        }
        return -1;
    }

    static String strip(String s, String content, int start, int stop) {
        int b = 0;
        int e = s.length();
        for (int i = 0; i < start && s.startsWith(content, b) && b + content.length() <= e; i++) {
            b += content.length();
        }
        for (int i = 0; i < stop && e - content.length() >= b && s.startsWith(content, e - content.length()); i++) {
            e -= content.length();
        }
        return s.substring(b, e);
    }

    static TokenDecoder parse(JsonNode node, String file) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            return new TokenDecoder(List.of(), " ", 0, 0, true);
        }
        List<JsonNode> flat = new ArrayList<>();
        flatten(node, flat);
        List<Step> steps = new ArrayList<>();
        boolean fused = false;
        String stripContent = " ";
        int stripStart = 0;
        int stripStop = 0;
        for (JsonNode d : flat) {
            String type = d.path("type").asText("");
            String where = file + ": decoder " + type;
            switch (type) {
                case "ByteLevel" -> steps.add(new ByteLevelStep());
                case "ByteFallback" -> steps.add(new ByteFallback());
                case "Fuse" -> fused = true;
                case "Replace" -> steps.add(new Replace(Json.pattern(d.path("pattern"), where), d.path("content").asText()));
                case "Strip" -> {
                    String content = d.path("content").asText(" ");
                    int start = d.path("start").asInt(0);
                    int stop = d.path("stop").asInt(0);
                    if (fused) {
                        stripContent = content;
                        stripStart = start;
                        stripStop = stop;
                    } else {
                        steps.add(new StripEach(content, start, stop));
                    }
                }
                case "Metaspace" -> {
                    String replacement = d.path("replacement").asText("\u2581");
                    steps.add(new Replace(Pattern.compile(Pattern.quote(replacement)), " "));
                    if (PreTokenizer.prependScheme(d, where) != PreTokenizer.PrependScheme.NEVER) {
                        stripContent = " ";
                        stripStart = 1;
                    }
                }
                default -> throw new TokenizerException(file + ": unsupported decoder type \"" + type
                        + "\" (supported: ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence)");
            }
        }
        return new TokenDecoder(List.copyOf(steps), stripContent, stripStart, stripStop, false);
    }

    private static void flatten(JsonNode node, List<JsonNode> out) {
        if ("Sequence".equals(node.path("type").asText())) {
            for (JsonNode child : node.path("decoders")) {
                flatten(child, out);
            }
        } else {
            out.add(node);
        }
    }
}
