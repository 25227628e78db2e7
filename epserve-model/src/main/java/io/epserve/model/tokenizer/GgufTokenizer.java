package io.epserve.model.tokenizer;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.gguf.GgufMetadata;
import io.epserve.format.gguf.GgufMetadata.ValueType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;

/**
 * The tokenizer a GGUF file carries in its metadata ({@code tokenizer.ggml.*}), expressed as the
 * {@code tokenizer.json} / {@code tokenizer_config.json} Hugging Face writes for the same
 * vocabulary, so that one tokenizer implementation serves both formats:
 * <ul>
 *   <li>{@code llama} (sentencepiece with scores): BPE with byte fallback whose merges are every
 *       split of a normal piece into two pieces, ranked by the merged piece's score, highest
 *       first. That is transformers' {@code SentencePieceExtractor}, and it merges as llama.cpp's
 *       {@code llm_tokenizer_spm} does (always the adjacent pair whose union scores highest).
 *       Normalizer "▁"-prefix + spaces→"▁" (unless {@code add_space_prefix} is false).</li>
 *   <li>{@code gpt2} (byte-level BPE with {@code tokenizer.ggml.merges}): the pre-tokenizer regex
 *       is chosen by {@code tokenizer.ggml.pre} as llama.cpp's {@code llm_tokenizer_bpe} does.</li>
 * </ul>
 * Tokens of type CONTROL, USER_DEFINED and UNKNOWN are added tokens (matched whole in the text);
 * CONTROL and UNKNOWN are special. bos/eos/add_bos come from the ids and flags in the metadata,
 * the end-of-turn token (eot) also stops generation, and {@code tokenizer.chat_template} is the
 * chat template.
 */
public final class GgufTokenizer {
    private GgufTokenizer() {}

    /** llama.cpp's token types (llama-vocab.h {@code llama_token_type}). */
    static final int NORMAL = 1;
    static final int UNKNOWN = 2;
    static final int CONTROL = 3;
    static final int USER_DEFINED = 4;
    static final int BYTE = 6;

    private static final String GPT2_REGEX =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    private static final String LLAMA3_REGEX =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private static final String QWEN2_REGEX =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    private static final List<String> DEEPSEEK3_REGEXES = List.of(
            "\\p{N}{1,3}",
            "[一-龥\u3040-ゟ゠-ヿ]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");

    /** The pre-tokenizer names of {@code tokenizer.ggml.pre} this reads, with their regexes (null: GPT-2's built in). */
    private static final Map<String, List<String>> PRE = Map.ofEntries(
            Map.entry("default", List.of()), Map.entry("gpt-2", List.of()), Map.entry("gpt2", List.of()),
            Map.entry("olmo", List.of()),
            Map.entry("llama-bpe", List.of(LLAMA3_REGEX)), Map.entry("llama3", List.of(LLAMA3_REGEX)),
            Map.entry("smaug-bpe", List.of(LLAMA3_REGEX)), Map.entry("dbrx", List.of(LLAMA3_REGEX)),
            Map.entry("qwen2", List.of(QWEN2_REGEX)), Map.entry("deepseek-v3", DEEPSEEK3_REGEXES));

    /** The tokenizer of a GGUF file's metadata. */
    public static Tokenizer from(GgufMetadata md) {
        String source = md.file() + " (tokenizer.ggml.*)";
        String model = md.optString("tokenizer.ggml.model").orElseThrow(() -> new TokenizerException(
                md.file() + ": metadata key 'tokenizer.ggml.model' is missing (no tokenizer in this GGUF file)"));
        List<String> tokens = strings(md, "tokenizer.ggml.tokens");
        int[] types = md.optArray("tokenizer.ggml.token_type", ValueType.INT32, ValueType.UINT32)
                .map(a -> a.items().stream().mapToInt(o -> ((Long) o).intValue()).toArray()).orElseGet(() -> {
                    int[] t = new int[tokens.size()];
                    Arrays.fill(t, NORMAL);
                    return t;
                });
        if (types.length != tokens.size()) {
            throw new TokenizerException(md.file() + ": metadata key 'tokenizer.ggml.token_type' has " + types.length
                    + " entries for " + tokens.size() + " tokens");
        }
        ObjectNode root = JsonNodeFactory.instance.objectNode();
        ObjectNode bpe = root.putObject("model");
        bpe.put("type", "BPE");
        ObjectNode vocab = bpe.putObject("vocab");
        for (int i = 0; i < tokens.size(); i++) {
            vocab.put(tokens.get(i), i);
        }
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < tokens.size(); i++) {
            if (types[i] == CONTROL || types[i] == USER_DEFINED || types[i] == UNKNOWN) {
                ObjectNode t = added.addObject();
                t.put("id", i);
                t.put("content", tokens.get(i));
                t.put("special", types[i] != USER_DEFINED);
                t.put("normalized", false);
            }
        }
        switch (model) {
            case "llama" -> sentencepiece(md, root, bpe, tokens, types);
            case "gpt2" -> byteLevel(md, root, bpe);
            default -> throw new TokenizerException(md.file() + ": metadata key 'tokenizer.ggml.model' is '" + model
                    + "'; epserve reads 'llama' (sentencepiece) and 'gpt2' (byte-level BPE) vocabularies");
        }
        ObjectNode config = JsonNodeFactory.instance.objectNode();
        tokenText(md, tokens, "tokenizer.ggml.bos_token_id").ifPresent(t -> config.put("bos_token", t));
        tokenText(md, tokens, "tokenizer.ggml.eos_token_id").ifPresent(t -> config.put("eos_token", t));
        md.optBool("tokenizer.ggml.add_bos_token").ifPresent(b -> config.put("add_bos_token", b));
        md.optBool("tokenizer.ggml.add_eos_token").ifPresent(b -> config.put("add_eos_token", b));
        if (!config.has("add_bos_token")) {
            // llama.cpp's default: sentencepiece vocabularies add bos, byte-level ones do not
            config.put("add_bos_token", model.equals("llama"));
        }
        md.optString("tokenizer.chat_template").ifPresent(t -> config.put("chat_template", t));
        ObjectNode generation = JsonNodeFactory.instance.objectNode();
        ArrayNode eos = generation.putArray("eos_token_id");
        for (String key : List.of("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")) {
            md.optLong(key).ifPresent(id -> {
                checkId(md, key, id, tokens.size());
                eos.add(id);
            });
        }
        return Tokenizer.build(root, config, generation, source);
    }

    /** The tokenizer_config.json values of a GGUF file: bos/eos token text and the chat template. */
    public static ObjectNode tokenizerConfig(GgufMetadata md) {
        List<String> tokens = strings(md, "tokenizer.ggml.tokens");
        ObjectNode config = JsonNodeFactory.instance.objectNode();
        tokenText(md, tokens, "tokenizer.ggml.bos_token_id").ifPresent(t -> config.put("bos_token", t));
        tokenText(md, tokens, "tokenizer.ggml.eos_token_id").ifPresent(t -> config.put("eos_token", t));
        md.optString("tokenizer.chat_template").ifPresent(t -> config.put("chat_template", t));
        return config;
    }

    private static List<String> strings(GgufMetadata md, String key) {
        GgufMetadata.Array a = md.optArray(key, ValueType.STRING).orElseThrow(() -> new TokenizerException(
                md.file() + ": metadata key '" + key + "' is missing"));
        List<String> out = new ArrayList<>(a.size());
        a.items().forEach(o -> out.add((String) o));
        return out;
    }

    private static void checkId(GgufMetadata md, String key, long id, int vocab) {
        if (id < 0 || id >= vocab) {
            throw new TokenizerException(md.file() + ": metadata key '" + key + "' is " + id + ", outside the vocabulary of " + vocab);
        }
    }

    private static Optional<String> tokenText(GgufMetadata md, List<String> tokens, String key) {
        return md.optLong(key).map(id -> {
            checkId(md, key, id, tokens.size());
            return tokens.get(id.intValue());
        });
    }

    private static void sentencepiece(GgufMetadata md, ObjectNode root, ObjectNode bpe, List<String> tokens, int[] types) {
        float[] scores = new float[tokens.size()];
        md.optArray("tokenizer.ggml.scores", ValueType.FLOAT32).ifPresent(a -> {
            if (a.size() != tokens.size()) {
                throw new TokenizerException(md.file() + ": metadata key 'tokenizer.ggml.scores' has " + a.size()
                        + " entries for " + tokens.size() + " tokens");
            }
            for (int i = 0; i < scores.length; i++) {
                scores[i] = ((Double) a.items().get(i)).floatValue();
            }
        });
        Map<String, Integer> normal = new HashMap<>();
        for (int i = 0; i < tokens.size(); i++) {
            if (types[i] == NORMAL || types[i] == USER_DEFINED) {
                normal.putIfAbsent(tokens.get(i), i);
            }
        }
        // (left, right, merged) for every split of a normal piece into two pieces
        List<int[]> merges = new ArrayList<>();
        for (int id = 0; id < tokens.size(); id++) {
            if (types[id] != NORMAL) {
                continue;
            }
            String piece = tokens.get(id);
            for (int cut = piece.offsetByCodePoints(0, 1); cut < piece.length(); cut = piece.offsetByCodePoints(cut, 1)) {
                Integer l = normal.get(piece.substring(0, cut));
                Integer r = normal.get(piece.substring(cut));
                if (l != null && r != null) {
                    merges.add(new int[] {l, r, id});
                }
            }
        }
        merges.sort(Comparator.<int[]>comparingDouble(m -> -scores[m[2]]).thenComparingInt(m -> m[2])
                .thenComparingInt(m -> m[0]).thenComparingInt(m -> m[1]));
        ArrayNode mergeNode = bpe.putArray("merges");
        for (int[] m : merges) {
            ArrayNode pair = mergeNode.addArray();
            pair.add(tokens.get(m[0]));
            pair.add(tokens.get(m[1]));
        }
        md.optLong("tokenizer.ggml.unknown_token_id").ifPresent(id -> {
            checkId(md, "tokenizer.ggml.unknown_token_id", id, tokens.size());
            bpe.put("unk_token", tokens.get(id.intValue()));
        });
        bpe.put("fuse_unk", true);
        bpe.put("byte_fallback", true);
        boolean prefix = md.optBool("tokenizer.ggml.add_space_prefix").orElse(true);
        ObjectNode norm = root.putObject("normalizer");
        norm.put("type", "Sequence");
        ArrayNode ns = norm.putArray("normalizers");
        if (prefix) {
            ns.addObject().put("type", "Prepend").put("prepend", "\u2581");
        }
        ObjectNode replace = ns.addObject().put("type", "Replace");
        replace.putObject("pattern").put("String", " ");
        replace.put("content", "\u2581");
        ObjectNode dec = root.putObject("decoder");
        dec.put("type", "Sequence");
        ArrayNode ds = dec.putArray("decoders");
        ObjectNode back = ds.addObject().put("type", "Replace");
        back.putObject("pattern").put("String", "\u2581");
        back.put("content", " ");
        ds.addObject().put("type", "ByteFallback");
        ds.addObject().put("type", "Fuse");
        if (prefix) {
            ds.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        }
    }

    private static void byteLevel(GgufMetadata md, ObjectNode root, ObjectNode bpe) {
        ArrayNode merges = bpe.putArray("merges");
        md.optArray("tokenizer.ggml.merges", ValueType.STRING).ifPresentOrElse(
                a -> a.items().forEach(o -> merges.add((String) o)),
                () -> {
                    throw new TokenizerException(md.file() + ": metadata key 'tokenizer.ggml.merges' is missing (a gpt2 vocabulary needs it)");
                });
        String pre = md.optString("tokenizer.ggml.pre").orElse("default");
        List<String> regexes = PRE.get(pre);
        if (regexes == null) {
            throw new TokenizerException(md.file() + ": metadata key 'tokenizer.ggml.pre' is '" + pre + "', which epserve does not "
                    + "read; it reads " + String.join(", ", new TreeSet<>(PRE.keySet())));
        }
        ObjectNode seq = root.putObject("pre_tokenizer");
        seq.put("type", "Sequence");
        ArrayNode steps = seq.putArray("pretokenizers");
        for (String r : regexes) {
            ObjectNode split = steps.addObject().put("type", "Split");
            split.putObject("pattern").put("Regex", r);
            split.put("behavior", "Isolated").put("invert", false);
        }
        steps.addObject().put("type", "ByteLevel").put("add_prefix_space", false).put("use_regex", regexes.isEmpty());
        root.putObject("decoder").put("type", "ByteLevel");
    }
}
