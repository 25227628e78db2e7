package io.epserve.model.tokenizer;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The tokenizer of epserve's built-in demo model, generated deterministically for an exact
 * vocabulary size V (the demo uses {@link #DEFAULT_VOCAB_SIZE}).
 *
 * <pre>
 *   id 0..255      one token per byte, spelled in the GPT-2 byte-level alphabet (id = byte value)
 *   id 256         &lt;|bos|&gt;   special added token
 *   id 257         &lt;|eos|&gt;   special added token
 *   id 258..       merges learned by BPE on {@link DemoCorpus} (most frequent pair first,
 *                  ties to the lowest pair of ids), until no pair occurs twice
 *   ..id V-1       synthetic merges: each word-like token (Ġ?[a-z]+) extended by one letter,
 *                  breadth first in id order, letters in English frequency order, until V
 * </pre>
 *
 * Pre-tokenizer and decoder are GPT-2's ByteLevel (with its regex); a TemplateProcessing
 * post-processor and {@code add_bos_token} put bos in front, as Llama does. Every merge joins
 * two existing tokens into a token that did not exist, so the file loads in Hugging Face
 * tokenizers as well as in {@link Tokenizer}.
 */
public final class DemoTokenizer {
    public static final int DEFAULT_VOCAB_SIZE = 32_000;
    public static final String BOS = "<|bos|>";
    public static final String EOS = "<|eos|>";
    public static final int BOS_ID = 256;
    public static final int EOS_ID = 257;
    /** Byte tokens and the two special tokens: the smallest possible vocabulary. */
    public static final int MIN_VOCAB_SIZE = 258;

    private static final String LETTERS_BY_FREQUENCY = "etaoinshrdlcumwfgypbvkjxqz";
    private static final Map<Integer, String> CACHE = new ConcurrentHashMap<>();

    private DemoTokenizer() {}

    /** The {@code tokenizer.json} text for a vocabulary of exactly {@code vocabSize} ids. */
    public static String tokenizerJson(int vocabSize) {
        if (vocabSize < MIN_VOCAB_SIZE) {
            throw new IllegalArgumentException("demo tokenizer vocab size must be at least " + MIN_VOCAB_SIZE
                    + " (256 bytes + bos + eos), got " + vocabSize);
        }
        return CACHE.computeIfAbsent(vocabSize, DemoTokenizer::generate);
    }

    /** The {@code tokenizer_config.json} text (bos/eos names, add_bos_token). */
    public static String tokenizerConfigJson() {
        return """
                {
                  "tokenizer_class": "PreTrainedTokenizerFast",
                  "add_bos_token": true,
                  "add_eos_token": false,
                  "bos_token": "<|bos|>",
                  "eos_token": "<|eos|>",
                  "clean_up_tokenization_spaces": false,
                  "model_max_length": 4096,
                  "chat_template": "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
                }
                """;
    }

    /** The demo tokenizer itself. */
    public static Tokenizer create(int vocabSize) {
        return Tokenizer.fromJson(tokenizerJson(vocabSize), tokenizerConfigJson());
    }

    /** Writes {@code tokenizer.json} and {@code tokenizer_config.json} into {@code dir}. */
    public static void write(Path dir, int vocabSize) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("tokenizer.json"), tokenizerJson(vocabSize), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("tokenizer_config.json"), tokenizerConfigJson(), StandardCharsets.UTF_8);
    }

    // ---------------------------------------------------------------- generation

    static String generate(int vocabSize) {
        List<String> tokens = new ArrayList<>(vocabSize);
        Map<String, Integer> ids = new HashMap<>(vocabSize * 2);
        for (int b = 0; b < 256; b++) {
            add(tokens, ids, String.valueOf(ByteLevel.charOf(b)));
        }
        add(tokens, ids, BOS);
        add(tokens, ids, EOS);
        List<int[]> merges = new ArrayList<>(vocabSize - MIN_VOCAB_SIZE);
        learnMerges(tokens, ids, merges, vocabSize);
        fillSyntheticMerges(tokens, ids, merges, vocabSize);
        return toJson(tokens, merges);
    }

    private static void add(List<String> tokens, Map<String, Integer> ids, String token) {
        ids.put(token, tokens.size());
        tokens.add(token);
    }

    /**
     * Plain BPE training (Sennrich et al. 2016) over the corpus words: count adjacent pairs
     * weighted by word frequency, merge the most frequent, repeat. A pair whose concatenation
     * is already a token (reachable by another split) is skipped, so every merge makes a new token.
     */
    private static void learnMerges(List<String> tokens, Map<String, Integer> ids, List<int[]> merges, int vocabSize) {
        // Words of the corpus as the demo pre-tokenizer cuts them, in byte-level spelling, counted.
        TreeMap<String, Integer> counts = new TreeMap<>();
        Matcher m = Pattern.compile(ByteLevel.GPT2_PATTERN, Pattern.UNICODE_CHARACTER_CLASS).matcher(DemoCorpus.TEXT);
        while (m.find()) {
            counts.merge(ByteLevel.encode(m.group()), 1, Integer::sum);
        }
        int[][] words = new int[counts.size()][];
        int[] freq = new int[counts.size()];
        int w = 0;
        for (Map.Entry<String, Integer> e : counts.entrySet()) {
            String s = e.getKey();
            words[w] = new int[s.length()];
            for (int i = 0; i < s.length(); i++) {
                words[w][i] = ids.get(String.valueOf(s.charAt(i)));
            }
            freq[w++] = e.getValue();
        }
        int[] lengths = new int[words.length];
        for (int i = 0; i < words.length; i++) {
            lengths[i] = words[i].length;
        }
        Set<Long> skipped = new HashSet<>();
        HashMap<Long, int[]> pairCounts = new HashMap<>();
        while (tokens.size() < vocabSize) {
            pairCounts.clear();
            for (int i = 0; i < words.length; i++) {
                int[] word = words[i];
                for (int j = 0; j + 1 < lengths[i]; j++) {
                    long key = ((long) word[j] << 32) | word[j + 1];
                    pairCounts.computeIfAbsent(key, k -> new int[1])[0] += freq[i];
                }
            }
            long best = -1;
            int bestCount = 1; // a pair must occur at least twice to be worth a token
            for (Map.Entry<Long, int[]> e : pairCounts.entrySet()) {
                int c = e.getValue()[0];
                long key = e.getKey();
                if ((c > bestCount || (c == bestCount && key < best)) && !skipped.contains(key)) {
                    best = key;
                    bestCount = c;
                }
            }
            if (best < 0) {
                return;
            }
            int a = (int) (best >>> 32);
            int b = (int) best;
            String merged = tokens.get(a) + tokens.get(b);
            if (ids.containsKey(merged)) {
                skipped.add(best);
                continue;
            }
            int id = tokens.size();
            add(tokens, ids, merged);
            merges.add(new int[] {a, b});
            for (int i = 0; i < words.length; i++) {
                int[] word = words[i];
                int n = lengths[i];
                int out = 0;
                for (int j = 0; j < n; j++) {
                    if (j + 1 < n && word[j] == a && word[j + 1] == b) {
                        word[out++] = id;
                        j++;
                    } else {
                        word[out++] = word[j];
                    }
                }
                lengths[i] = out;
            }
        }
    }

    /** Extends word-like tokens by one letter, breadth first, until the vocabulary is full. */
    private static void fillSyntheticMerges(List<String> tokens, Map<String, Integer> ids, List<int[]> merges, int vocabSize) {
        Pattern wordLike = Pattern.compile("\u0120?[a-z]+");
        List<Integer> frontier = new ArrayList<>();
        for (int id = 0; id < tokens.size(); id++) {
            if (wordLike.matcher(tokens.get(id)).matches()) {
                frontier.add(id);
            }
        }
        int[] letters = new int[LETTERS_BY_FREQUENCY.length()];
        for (int i = 0; i < letters.length; i++) {
            letters[i] = LETTERS_BY_FREQUENCY.charAt(i); // byte value = id of the byte token
        }
        for (int f = 0; f < frontier.size() && tokens.size() < vocabSize; f++) {
            int left = frontier.get(f);
            for (int letter : letters) {
                if (tokens.size() >= vocabSize) {
                    break;
                }
                String merged = tokens.get(left) + tokens.get(letter);
                if (!ids.containsKey(merged)) {
                    frontier.add(tokens.size());
                    add(tokens, ids, merged);
                    merges.add(new int[] {left, letter});
                }
            }
        }
    }

    private static String toJson(List<String> tokens, List<int[]> merges) {
        StringWriter out = new StringWriter(tokens.size() * 24);
        try (JsonGenerator g = new JsonFactory().createGenerator(out)) {
            g.writeStartObject();
            g.writeStringField("version", "1.0");
            g.writeNullField("truncation");
            g.writeNullField("padding");
            g.writeArrayFieldStart("added_tokens");
            for (String special : new String[] {BOS, EOS}) {
                g.writeStartObject();
                g.writeNumberField("id", special.equals(BOS) ? BOS_ID : EOS_ID);
                g.writeStringField("content", special);
                g.writeBooleanField("single_word", false);
                g.writeBooleanField("lstrip", false);
                g.writeBooleanField("rstrip", false);
                g.writeBooleanField("normalized", false);
                g.writeBooleanField("special", true);
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeNullField("normalizer");
            g.writeFieldName("pre_tokenizer");
            writeByteLevel(g);
            g.writeFieldName("post_processor");
            writeTemplate(g);
            g.writeFieldName("decoder");
            writeByteLevel(g);
            g.writeObjectFieldStart("model");
            g.writeStringField("type", "BPE");
            g.writeNullField("dropout");
            g.writeNullField("unk_token");
            g.writeNullField("continuing_subword_prefix");
            g.writeNullField("end_of_word_suffix");
            g.writeBooleanField("fuse_unk", false);
            g.writeBooleanField("byte_fallback", false);
            g.writeBooleanField("ignore_merges", false);
            g.writeObjectFieldStart("vocab");
            for (int id = 0; id < tokens.size(); id++) {
                g.writeNumberField(tokens.get(id), id);
            }
            g.writeEndObject();
            g.writeArrayFieldStart("merges");
            for (int[] merge : merges) {
                g.writeStartArray();
                g.writeString(tokens.get(merge[0]));
                g.writeString(tokens.get(merge[1]));
                g.writeEndArray();
            }
            g.writeEndArray();
            g.writeEndObject();
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a StringWriter does not fail
        }
        return out.toString();
    }

    private static void writeByteLevel(JsonGenerator g) throws IOException {
        g.writeStartObject();
        g.writeStringField("type", "ByteLevel");
        g.writeBooleanField("add_prefix_space", false);
        g.writeBooleanField("trim_offsets", true);
        g.writeBooleanField("use_regex", true);
        g.writeEndObject();
    }

    private static void writeTemplate(JsonGenerator g) throws IOException {
        g.writeStartObject();
        g.writeStringField("type", "TemplateProcessing");
        g.writeArrayFieldStart("single");
        writeSpecial(g, BOS, 0);
        writeSequence(g, "A", 0);
        g.writeEndArray();
        g.writeArrayFieldStart("pair");
        writeSpecial(g, BOS, 0);
        writeSequence(g, "A", 0);
        writeSpecial(g, BOS, 1);
        writeSequence(g, "B", 1);
        g.writeEndArray();
        g.writeObjectFieldStart("special_tokens");
        g.writeObjectFieldStart(BOS);
        g.writeStringField("id", BOS);
        g.writeArrayFieldStart("ids");
        g.writeNumber(BOS_ID);
        g.writeEndArray();
        g.writeArrayFieldStart("tokens");
        g.writeString(BOS);
        g.writeEndArray();
        g.writeEndObject();
        g.writeEndObject();
        g.writeEndObject();
    }

    private static void writeSpecial(JsonGenerator g, String id, int typeId) throws IOException {
        g.writeStartObject();
        g.writeObjectFieldStart("SpecialToken");
        g.writeStringField("id", id);
        g.writeNumberField("type_id", typeId);
        g.writeEndObject();
        g.writeEndObject();
    }

    private static void writeSequence(JsonGenerator g, String id, int typeId) throws IOException {
        g.writeStartObject();
        g.writeObjectFieldStart("Sequence");
        g.writeStringField("id", id);
        g.writeNumberField("type_id", typeId);
        g.writeEndObject();
        g.writeEndObject();
    }
}
