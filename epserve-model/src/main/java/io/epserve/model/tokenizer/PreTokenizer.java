package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code pre_tokenizer} of {@code tokenizer.json}: cuts normalized text into pieces
 * ("words") that BPE then encodes one at a time, and may rewrite them (ByteLevel maps bytes to
 * its alphabet, Metaspace turns spaces into "▁"). Semantics follow Hugging Face tokenizers'
 * {@code pre_tokenizers/*.rs}; unsupported kinds are refused at load.
 */
sealed interface PreTokenizer {

    /** A piece of text; {@code atStart} marks the piece that begins the whole input (Metaspace "first"). */
    record Piece(String text, boolean atStart) {}

    /** How the matches of a Split pattern are kept (HF {@code SplitDelimiterBehavior}). */
    enum Behavior {
        REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS;

        static Behavior parse(String s, String where) {
            return switch (s) {
                case "Removed" -> REMOVED;
                case "Isolated" -> ISOLATED;
                case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
                case "MergedWithNext" -> MERGED_WITH_NEXT;
                case "Contiguous" -> CONTIGUOUS;
                default -> throw new TokenizerException(where + ": unknown split behavior \"" + s + "\"");
            };
        }
    }

    List<Piece> apply(List<Piece> pieces);

    /** True when this pre-tokenizer maps text to the byte-level alphabet (so BPE sees byte chars). */
    default boolean byteLevel() {
        return false;
    }

    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        @Override
        public List<Piece> apply(List<Piece> pieces) {
            List<Piece> out = new ArrayList<>(pieces.size() * 4);
            for (Piece p : pieces) {
                split(p, pattern, behavior, invert, out);
            }
            return out;
        }
    }

    /**
     * GPT-2 byte level: optional leading space, optional GPT-2 regex split, then every UTF-8
     * byte shown as its {@link ByteLevel} char.
     */
    record ByteLevelPre(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        private static final Pattern GPT2 = Regexes.compile(ByteLevel.GPT2_PATTERN, "GPT-2 pattern");

        @Override
        public List<Piece> apply(List<Piece> pieces) {
            List<Piece> out = new ArrayList<>(pieces.size() * 4);
            List<Piece> tmp = new ArrayList<>();
            for (Piece p : pieces) {
                String t = p.text();
                if (addPrefixSpace && !t.startsWith(" ")) {
                    t = " " + t;
                }
                tmp.clear();
                if (useRegex) {
                    split(new Piece(t, p.atStart()), GPT2, Behavior.ISOLATED, false, tmp);
                } else {
                    tmp.add(new Piece(t, p.atStart()));
                }
                for (Piece q : tmp) {
                    out.add(new Piece(ByteLevel.encode(q.text()), q.atStart()));
                }
            }
            return out;
        }

        @Override
        public boolean byteLevel() {
            return true;
        }
    }

    /** Sentencepiece style: spaces become {@code replacement}, which may also be prepended. */
    record Metaspace(String replacement, PrependScheme prependScheme, boolean split) implements PreTokenizer {
        @Override
        public List<Piece> apply(List<Piece> pieces) {
            List<Piece> out = new ArrayList<>(pieces.size() * 4);
            Pattern delimiter = Pattern.compile(Pattern.quote(replacement));
            for (Piece p : pieces) {
                String t = p.text().replace(" ", replacement);
                boolean prepend = switch (prependScheme) {
                    case ALWAYS -> true;
                    case FIRST -> p.atStart();
                    case NEVER -> false;
                };
                if (prepend && !t.startsWith(replacement) && !t.isEmpty()) {
                    t = replacement + t;
                }
                Piece q = new Piece(t, p.atStart());
                if (split) {
                    PreTokenizer.split(q, delimiter, Behavior.MERGED_WITH_NEXT, false, out);
                } else {
                    out.add(q);
                }
            }
            return out;
        }
    }

    enum PrependScheme { ALWAYS, FIRST, NEVER }

    record Sequence(List<PreTokenizer> steps) implements PreTokenizer {
        @Override
        public List<Piece> apply(List<Piece> pieces) {
            for (PreTokenizer s : steps) {
                pieces = s.apply(pieces);
            }
            return pieces;
        }

        @Override
        public boolean byteLevel() {
            return steps.stream().anyMatch(PreTokenizer::byteLevel);
        }
    }

    /**
     * Cuts {@code piece} at the matches of {@code pattern} (empty matches ignored) and keeps the
     * parts as {@code behavior} says; mirrors HF {@code NormalizedString::split}.
     */
    static void split(Piece piece, Pattern pattern, Behavior behavior, boolean invert, List<Piece> out) {
        String text = piece.text();
        if (text.isEmpty()) {
            return;
        }
        // Segments as (start, end, isMatch) triples, covering the text in order.
        int[] seg = new int[16];
        int n = 0;
        Matcher m = pattern.matcher(text);
        int prev = 0;
        while (m.find()) {
            if (m.start() == m.end()) {
                continue;
            }
            if (m.start() > prev) {
                seg = put(seg, n++, prev, m.start(), 0);
            }
            seg = put(seg, n++, m.start(), m.end(), 1);
            prev = m.end();
        }
        if (prev < text.length()) {
            seg = put(seg, n++, prev, text.length(), 0);
        }
        if (invert) {
            for (int i = 0; i < n; i++) {
                seg[3 * i + 2] ^= 1;
            }
        }
        // Apply the behavior, producing kept (start, end) ranges.
        int[] keep = new int[2 * n];
        int k = 0;
        switch (behavior) {
            case REMOVED -> {
                for (int i = 0; i < n; i++) {
                    if (seg[3 * i + 2] == 0) {
                        keep[2 * k] = seg[3 * i];
                        keep[2 * k++ + 1] = seg[3 * i + 1];
                    }
                }
            }
            case ISOLATED -> {
                for (int i = 0; i < n; i++) {
                    keep[2 * k] = seg[3 * i];
                    keep[2 * k++ + 1] = seg[3 * i + 1];
                }
            }
            case MERGED_WITH_PREVIOUS, CONTIGUOUS -> {
                boolean previousMatch = false;
                for (int i = 0; i < n; i++) {
                    boolean isMatch = seg[3 * i + 2] == 1;
                    boolean merge = behavior == Behavior.CONTIGUOUS
                            ? isMatch == previousMatch && k > 0
                            : isMatch && !previousMatch && k > 0;
                    if (merge) {
                        keep[2 * (k - 1) + 1] = seg[3 * i + 1];
                    } else {
                        keep[2 * k] = seg[3 * i];
                        keep[2 * k++ + 1] = seg[3 * i + 1];
                    }
                    previousMatch = isMatch;
                }
            }
            case MERGED_WITH_NEXT -> {
                // Walk backwards: a match joins the piece that follows it.
                boolean previousMatch = false;
                for (int i = n - 1; i >= 0; i--) {
                    boolean isMatch = seg[3 * i + 2] == 1;
                    if (isMatch && !previousMatch && k > 0) {
                        keep[2 * (k - 1)] = seg[3 * i];
                    } else {
                        keep[2 * k] = seg[3 * i];
                        keep[2 * k++ + 1] = seg[3 * i + 1];
                    }
                    previousMatch = isMatch;
                }
                for (int a = 0, b = k - 1; a < b; a++, b--) {
                    int s = keep[2 * a], e = keep[2 * a + 1];
                    keep[2 * a] = keep[2 * b];
                    keep[2 * a + 1] = keep[2 * b + 1];
                    keep[2 * b] = s;
                    keep[2 * b + 1] = e;
                }
            }
        }
        for (int i = 0; i < k; i++) {
            int s = keep[2 * i], e = keep[2 * i + 1];
            if (e > s) {
                out.add(new Piece(text.substring(s, e), piece.atStart() && s == 0));
            }
        }
    }

    private static int[] put(int[] seg, int i, int start, int end, int match) {
        if (3 * i + 3 > seg.length) {
            seg = Arrays.copyOf(seg, seg.length * 2);
        }
        seg[3 * i] = start;
        seg[3 * i + 1] = end;
        seg[3 * i + 2] = match;
        return seg;
    }

    /** Null for a JSON null or missing node (the whole text is one piece). */
    static PreTokenizer parse(JsonNode node, String file) {
        if (node == null || node.isNull() || node.isMissingNode()) {
            return null;
        }
        String type = node.path("type").asText("");
        String where = file + ": pre_tokenizer " + type;
        return switch (type) {
            case "Split" -> new Split(Json.pattern(node.path("pattern"), where),
                    Behavior.parse(node.path("behavior").asText("Isolated"), where),
                    node.path("invert").asBoolean(false));
            case "ByteLevel" -> new ByteLevelPre(node.path("add_prefix_space").asBoolean(true),
                    node.path("use_regex").asBoolean(true));
            case "Metaspace" -> new Metaspace(node.path("replacement").asText("\u2581"),
                    prependScheme(node, where), node.path("split").asBoolean(true));
            case "Digits" -> new Split(Pattern.compile(node.path("individual_digits").asBoolean(false) ? "\\p{N}" : "\\p{N}+"),
                    Behavior.ISOLATED, false);
            case "Whitespace" -> new Split(Pattern.compile("\\w+|[^\\w\\s]+", Pattern.UNICODE_CHARACTER_CLASS),
                    Behavior.REMOVED, true);
            case "WhitespaceSplit" -> new Split(Pattern.compile("\\s+", Pattern.UNICODE_CHARACTER_CLASS),
                    Behavior.REMOVED, false);
            case "Punctuation" -> new Split(Pattern.compile("[\\p{P}!-/:-@\\[-`{-~]"),
                    Behavior.parse(node.path("behavior").asText("Isolated"), where), false);
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                for (JsonNode child : node.path("pretokenizers")) {
                    PreTokenizer p = parse(child, file);
                    if (p != null) {
                        steps.add(p);
                    }
                }
                yield new Sequence(List.copyOf(steps));
            }
            default -> throw new TokenizerException(file + ": unsupported pre_tokenizer type \"" + type
                    + "\" (supported: Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, Sequence)");
        };
    }

    /** {@code prepend_scheme} of newer files, or the older boolean {@code add_prefix_space}. */
    static PrependScheme prependScheme(JsonNode node, String where) {
        JsonNode scheme = node.get("prepend_scheme");
        if (scheme != null && !scheme.isNull()) {
            return switch (scheme.asText()) {
                case "always" -> PrependScheme.ALWAYS;
                case "first" -> PrependScheme.FIRST;
                case "never" -> PrependScheme.NEVER;
                default -> throw new TokenizerException(where + ": unknown prepend_scheme \"" + scheme.asText() + "\"");
            };
        }
        return node.path("add_prefix_space").asBoolean(true) ? PrependScheme.ALWAYS : PrependScheme.NEVER;
    }
}
