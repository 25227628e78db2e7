package io.epserve.model.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.gguf.GgufFile;
import io.epserve.format.gguf.GgufModel;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/**
 * A Hugging Face fast tokenizer ({@code tokenizer.json}) with a BPE model: the byte-level
 * family (GPT-2, Llama 3, Qwen, OLMoE, DeepSeek) and the sentencepiece conversions with
 * {@code ▁} and byte fallback (Llama 2, Mistral, Mixtral).
 *
 * <p>Encoding follows HF's pipeline: added tokens are cut out of the raw text first; each
 * stretch between them is normalized, pre-tokenized into words, and each word is BPE-encoded
 * ({@link BpeModel}). Decoding concatenates the bytes each token stands for
 * ({@link TokenDecoder}) and reads them as UTF-8.
 *
 * <p>bos/eos come from {@code tokenizer_config.json} ({@code bos_token}, {@code eos_token},
 * {@code add_bos_token}) and, where present, {@code generation_config.json}
 * ({@code eos_token_id} may list several stop ids, as Llama 3 Instruct does).
 *
 * <p>Immutable and safe to share between threads; {@link StreamingDecoder}s are per sequence.
 */
public final class Tokenizer {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String source;
    private final Normalizer normalizer;
    private final PreTokenizer preTokenizer;
    private final BpeModel model;
    final TokenDecoder decoder;
    private final Map<String, Integer> vocab;
    private final String[] idToToken;
    private final byte[][] idToBytes;
    private final boolean[] special;
    private final List<AddedToken> addedTokens;
    private final Map<String, Integer> addedIds = new HashMap<>();
    private final AddedTokenMatcher allAdded;
    private final AddedTokenMatcher nonSpecialAdded;
    private final Integer bosId;
    private final Set<Integer> eosIds;
    private final boolean addBosToken;
    private final boolean addEosToken;

    private Tokenizer(String source, Normalizer normalizer, PreTokenizer preTokenizer, BpeModel model,
                      TokenDecoder decoder, Map<String, Integer> vocab, List<AddedToken> addedTokens,
                      Integer bosId, Set<Integer> eosIds, boolean addBosToken, boolean addEosToken) {
        this.source = source;
        this.normalizer = normalizer;
        this.preTokenizer = preTokenizer;
        this.model = model;
        this.decoder = decoder;
        this.vocab = vocab;
        this.addedTokens = List.copyOf(addedTokens);
        int size = 0;
        for (int id : vocab.values()) {
            size = Math.max(size, id + 1);
        }
        for (AddedToken t : addedTokens) {
            size = Math.max(size, t.id() + 1);
        }
        this.idToToken = new String[size];
        for (Map.Entry<String, Integer> e : vocab.entrySet()) {
            idToToken[e.getValue()] = e.getKey();
        }
        this.special = new boolean[size];
        List<AddedToken> nonSpecial = new ArrayList<>();
        for (AddedToken t : addedTokens) {
            addedIds.put(t.content(), t.id());
            idToToken[t.id()] = t.content();
            special[t.id()] = t.special();
            if (!t.special()) {
                nonSpecial.add(t);
            }
        }
        this.idToBytes = new byte[size][];
        for (int i = 0; i < size; i++) {
            idToBytes[i] = idToToken[i] == null ? new byte[0] : decoder.bytes(idToToken[i]);
        }
        this.allAdded = new AddedTokenMatcher(addedTokens);
        this.nonSpecialAdded = new AddedTokenMatcher(nonSpecial);
        this.bosId = bosId;
        this.eosIds = Collections.unmodifiableSet(eosIds);
        this.addBosToken = addBosToken;
        this.addEosToken = addEosToken;
    }

    // ---------------------------------------------------------------- loading

    /**
     * Loads {@code tokenizer.json} from a model directory (or from the file itself when given a
     * file; or, for a GGUF model, from its metadata: {@link GgufTokenizer}), with
     * {@code tokenizer_config.json} and {@code generation_config.json} beside it
     * when they exist.
     *
     * @throws TokenizerException if the file is missing, malformed, or uses an unsupported component
     */
    public static Tokenizer load(Path modelDir) {
        if (GgufModel.isGguf(modelDir)) {
            // the tokenizer lives in the metadata of the first file
            try (GgufFile first = GgufFile.open(GgufModel.resolve(modelDir).getFirst())) {
                return GgufTokenizer.from(first.metadata());
            }
        }
        Path file = Files.isDirectory(modelDir) ? modelDir.resolve("tokenizer.json") : modelDir;
        Path dir = file.toAbsolutePath().getParent();
        if (!Files.isRegularFile(file)) {
            boolean spm = dir != null && Files.isRegularFile(dir.resolve("tokenizer.model"));
            throw new TokenizerException("no tokenizer.json at " + file + (spm
                    ? " (there is a sentencepiece tokenizer.model, which is not supported: convert it with"
                      + " Hugging Face transformers, e.g. AutoTokenizer.from_pretrained(dir).save_pretrained(dir))"
                    : ""));
        }
        JsonNode root = readJson(file);
        JsonNode config = dir == null ? null : readOptional(dir.resolve("tokenizer_config.json"));
        JsonNode generation = dir == null ? null : readOptional(dir.resolve("generation_config.json"));
        return build(root, config, generation, file.toString());
    }

    /**
     * Builds a tokenizer from the text of a {@code tokenizer.json} and, optionally, of a
     * {@code tokenizer_config.json} (null for none).
     */
    public static Tokenizer fromJson(String tokenizerJson, String tokenizerConfigJson) {
        JsonNode root = parseJson(tokenizerJson, "tokenizer.json");
        JsonNode config = tokenizerConfigJson == null ? null : parseJson(tokenizerConfigJson, "tokenizer_config.json");
        return build(root, config, null, "tokenizer.json");
    }

    private static JsonNode readJson(Path p) {
        try {
            return JSON.readTree(p.toFile());
        } catch (JsonProcessingException e) {
            throw new TokenizerException(p + ": not valid JSON: " + e.getOriginalMessage(), e);
        } catch (IOException e) {
            throw new TokenizerException(p + ": cannot read: " + e.getMessage(), e);
        }
    }

    private static JsonNode readOptional(Path p) {
        return Files.isRegularFile(p) ? readJson(p) : null;
    }

    private static JsonNode parseJson(String text, String name) {
        try {
            return JSON.readTree(text);
        } catch (JsonProcessingException e) {
            throw new TokenizerException(name + ": not valid JSON: " + e.getOriginalMessage(), e);
        }
    }

    static Tokenizer build(JsonNode root, JsonNode config, JsonNode generation, String file) {
        if (root == null || !root.isObject()) {
            throw new TokenizerException(file + ": expected a JSON object");
        }
        JsonNode modelNode = root.path("model");
        String type = modelNode.path("type").asText(null);
        if (type == null && modelNode.has("merges") && modelNode.has("vocab")) {
            type = "BPE"; // some older files leave the type out
        }
        if (!"BPE".equals(type)) {
            throw new TokenizerException(file + ": unsupported model type \"" + type + "\" (only BPE is supported)");
        }
        for (String field : new String[] {"continuing_subword_prefix", "end_of_word_suffix"}) {
            JsonNode v = modelNode.get(field);
            if (v != null && !v.isNull() && !v.asText().isEmpty()) {
                throw new TokenizerException(file + ": BPE option " + field + " = \"" + v.asText() + "\" is not supported");
            }
        }
        JsonNode vocabNode = modelNode.path("vocab");
        Map<String, Integer> vocab = HashMap.newHashMap(vocabNode.size());
        if (!vocabNode.isObject()) {
            throw new TokenizerException(file + ": model.vocab must be an object of token -> id");
        }
        for (Map.Entry<String, JsonNode> e : vocabNode.properties()) {
            int id = e.getValue().asInt(-1);
            if (id < 0) {
                throw new TokenizerException(file + ": vocab entry \"" + e.getKey() + "\" has no valid id");
            }
            vocab.put(e.getKey(), id);
        }
        JsonNode mergesNode = modelNode.path("merges");
        int mergeCount = mergesNode.isArray() ? mergesNode.size() : 0;
        int[][] pairs = new int[mergeCount][];
        int[] results = new int[mergeCount];
        for (int r = 0; r < mergeCount; r++) {
            JsonNode m = mergesNode.get(r);
            String a;
            String b;
            if (m.isArray() && m.size() == 2) {
                a = m.get(0).asText();
                b = m.get(1).asText();
            } else if (m.isTextual() && m.asText().indexOf(' ', 1) > 0) {
                String s = m.asText();
                int sp = s.indexOf(' ', 1);
                a = s.substring(0, sp);
                b = s.substring(sp + 1);
            } else {
                throw new TokenizerException(file + ": merge #" + r + " is neither \"a b\" nor [\"a\", \"b\"]: " + m);
            }
            Integer ia = vocab.get(a);
            Integer ib = vocab.get(b);
            Integer ir = vocab.get(a + b);
            if (ia == null || ib == null || ir == null) {
                String missing = ia == null ? a : ib == null ? b : a + b;
                throw new TokenizerException(file + ": merge #" + r + " (" + Regexes.quote(a) + ", " + Regexes.quote(b)
                        + ") uses token " + Regexes.quote(missing) + " that is not in the vocab");
            }
            pairs[r] = new int[] {ia, ib};
            results[r] = ir;
        }
        int unkId = -1;
        String unk = Json.tokenContent(modelNode.get("unk_token"));
        if (unk != null) {
            Integer id = vocab.get(unk);
            if (id != null) {
                unkId = id;
            }
        }
        BpeModel model = new BpeModel(vocab, pairs, results, unkId,
                modelNode.path("fuse_unk").asBoolean(false),
                modelNode.path("byte_fallback").asBoolean(false),
                modelNode.path("ignore_merges").asBoolean(false));

        Normalizer normalizer = Normalizer.parse(root.get("normalizer"), file);
        PreTokenizer preTokenizer = PreTokenizer.parse(root.get("pre_tokenizer"), file);
        TokenDecoder decoder = TokenDecoder.parse(root.get("decoder"), file);

        // Added tokens: tokenizer.json's list, then any extra from tokenizer_config's added_tokens_decoder.
        Map<Integer, AddedToken> added = new LinkedHashMap<>();
        for (JsonNode t : root.path("added_tokens")) {
            AddedToken at = addedToken(t, t.path("id").asInt(-1), file);
            added.put(at.id(), at);
        }
        if (config != null) {
            for (Map.Entry<String, JsonNode> e : config.path("added_tokens_decoder").properties()) {
                int id;
                try {
                    id = Integer.parseInt(e.getKey());
                } catch (NumberFormatException ex) {
                    throw new TokenizerException(file + ": tokenizer_config added_tokens_decoder key \"" + e.getKey() + "\" is not an id");
                }
                added.putIfAbsent(id, addedToken(e.getValue(), id, file));
            }
        }
        Map<String, Integer> addedByText = new HashMap<>();
        for (AddedToken t : added.values()) {
            addedByText.put(t.content(), t.id());
        }
        Function<String, Integer> byText = text -> {
            Integer id = addedByText.get(text);
            return id != null ? id : vocab.get(text);
        };

        // bos / eos and whether encodeWithSpecial adds them.
        Integer bos = null;
        Set<Integer> eos = new LinkedHashSet<>();
        Boolean addBos = null;
        Boolean addEos = null;
        if (config != null) {
            bos = lookup(byText, Json.tokenContent(config.get("bos_token")), "bos_token", file);
            Integer e = lookup(byText, Json.tokenContent(config.get("eos_token")), "eos_token", file);
            if (e != null) {
                eos.add(e);
            }
            if (config.path("add_bos_token").isBoolean()) {
                addBos = config.get("add_bos_token").asBoolean();
            }
            if (config.path("add_eos_token").isBoolean()) {
                addEos = config.get("add_eos_token").asBoolean();
            }
        }
        if (generation != null) {
            if (bos == null && generation.path("bos_token_id").canConvertToInt()) {
                bos = generation.get("bos_token_id").asInt();
            }
            JsonNode ge = generation.path("eos_token_id");
            if (ge.canConvertToInt()) {
                eos.add(ge.asInt());
            } else if (ge.isArray()) {
                for (JsonNode x : ge) {
                    eos.add(x.asInt());
                }
            }
        }
        // Without add_bos_token, a TemplateProcessing post-processor that starts with bos says it.
        List<String> template = templateSingle(root.get("post_processor"));
        if (addBos == null) {
            addBos = bos != null && !template.isEmpty() && bos.equals(byText.apply(template.getFirst()));
        }
        if (addEos == null) {
            addEos = !eos.isEmpty() && template.size() > 1 && eos.iterator().next().equals(byText.apply(template.getLast()));
        }
        return new Tokenizer(file, normalizer, preTokenizer, model, decoder, vocab, new ArrayList<>(added.values()),
                bos, eos, addBos, addEos);
    }

    private static AddedToken addedToken(JsonNode t, int id, String file) {
        String content = t.path("content").asText("");
        if (id < 0 || content.isEmpty()) {
            throw new TokenizerException(file + ": added token without id or content: " + t);
        }
        return new AddedToken(id, content, t.path("special").asBoolean(false), t.path("lstrip").asBoolean(false),
                t.path("rstrip").asBoolean(false), t.path("single_word").asBoolean(false),
                t.path("normalized").asBoolean(!t.path("special").asBoolean(false)));
    }

    private static Integer lookup(Function<String, Integer> byText, String token, String what, String file) {
        if (token == null) {
            return null;
        }
        Integer id = byText.apply(token);
        if (id == null) {
            throw new TokenizerException(file + ": " + what + " " + Regexes.quote(token) + " is neither in the vocab nor an added token");
        }
        return id;
    }

    /** The token texts and "$A" of a TemplateProcessing "single" template, looked for inside a Sequence too. */
    private static List<String> templateSingle(JsonNode pp) {
        if (pp == null || pp.isNull()) {
            return List.of();
        }
        if ("Sequence".equals(pp.path("type").asText())) {
            for (JsonNode child : pp.path("processors")) {
                List<String> t = templateSingle(child);
                if (!t.isEmpty()) {
                    return t;
                }
            }
            return List.of();
        }
        if (!"TemplateProcessing".equals(pp.path("type").asText())) {
            return List.of();
        }
        List<String> out = new ArrayList<>();
        for (JsonNode piece : pp.path("single")) {
            if (piece.has("SpecialToken")) {
                out.add(piece.get("SpecialToken").path("id").asText());
            } else if (piece.has("Sequence")) {
                out.add("$" + piece.get("Sequence").path("id").asText());
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- encoding

    /**
     * Token ids of {@code text}, adding no bos/eos. Added tokens written in the text (such as
     * {@code <|im_start|>} from a rendered chat template) become their ids.
     */
    public int[] encode(String text) {
        return encode(text, true);
    }

    /**
     * Token ids of {@code text}, adding no bos/eos. With {@code parseSpecial = false}, special
     * added tokens in the text are encoded as ordinary text (use it for untrusted user content
     * that must not inject control tokens); non-special added tokens are still matched.
     */
    public int[] encode(String text, boolean parseSpecial) {
        IntList out = new IntList(text.length() / 3 + 4);
        encodeInto(text, parseSpecial, out);
        return out.toArray();
    }

    /** As HF's {@code add_special_tokens=True}: bos first if {@link #addBosToken()}, eos last if {@link #addEosToken()}. */
    public int[] encodeWithSpecial(String text) {
        IntList out = new IntList(text.length() / 3 + 4);
        if (addBosToken && bosId != null) {
            out.add(bosId);
        }
        encodeInto(text, true, out);
        if (addEosToken && !eosIds.isEmpty()) {
            out.add(eosIds.iterator().next());
        }
        return out.toArray();
    }

    /** Token ids of {@code text} with bos first when {@code addBos} (and the tokenizer has a bos). */
    public int[] encodeWithSpecial(String text, boolean addBos) {
        IntList out = new IntList(text.length() / 3 + 4);
        if (addBos && bosId != null) {
            out.add(bosId);
        }
        encodeInto(text, true, out);
        return out.toArray();
    }

    private void encodeInto(String text, boolean parseSpecial, IntList out) {
        AddedTokenMatcher matcher = parseSpecial ? allAdded : nonSpecialAdded;
        if (matcher.isEmpty()) {
            encodePlain(text, true, out);
            return;
        }
        for (AddedTokenMatcher.Segment s : matcher.split(text)) {
            if (s.token() != null) {
                out.add(s.token().id());
            } else {
                encodePlain(text.substring(s.start(), s.end()), s.start() == 0, out);
            }
        }
    }

    private void encodePlain(String text, boolean atStart, IntList out) {
        if (text.isEmpty()) {
            return;
        }
        String normalized = normalizer == null ? text : normalizer.apply(text);
        if (preTokenizer == null) {
            model.encodeWord(normalized, out);
            return;
        }
        for (PreTokenizer.Piece p : preTokenizer.apply(List.of(new PreTokenizer.Piece(normalized, atStart)))) {
            model.encodeWord(p.text(), out);
        }
    }

    // ---------------------------------------------------------------- decoding

    /** Text of {@code ids}, special tokens included (HF's default {@code skip_special_tokens=False}). */
    public String decode(int[] ids) {
        return decode(ids, false);
    }

    /** Text of {@code ids}; special added tokens are left out when {@code skipSpecial}. */
    public String decode(int[] ids, boolean skipSpecial) {
        ByteBuf buf = new ByteBuf(ids.length * 4);
        boolean first = true;
        for (int id : ids) {
            checkId(id);
            if (skipSpecial && special[id]) {
                continue;
            }
            if (decoder.joinWithSpace && !first) {
                buf.add((byte) ' ');
            }
            buf.add(idToBytes[id]);
            first = false;
        }
        String s = new String(buf.bytes(), 0, buf.size(), StandardCharsets.UTF_8);
        if (decoder.stripStart > 0 || decoder.stripStop > 0) {
            s = TokenDecoder.strip(s, decoder.stripContent, decoder.stripStart, decoder.stripStop);
        }
        return s;
    }

    /** A decoder for one sequence's generated tokens; special tokens are left out of its text. */
    public StreamingDecoder streamingDecoder() {
        return new StreamingDecoder(this, true);
    }

    /** A decoder for one sequence's generated tokens. */
    public StreamingDecoder streamingDecoder(boolean skipSpecial) {
        return new StreamingDecoder(this, skipSpecial);
    }

    // ---------------------------------------------------------------- vocabulary

    /** Number of ids: one more than the largest id of the vocab and the added tokens. */
    public int vocabSize() {
        return idToToken.length;
    }

    /** Id of the beginning-of-sequence token, or null if the checkpoint names none. */
    public Integer bosId() {
        return bosId;
    }

    /** Ids that end generation (tokenizer_config eos_token first, then generation_config's); may be empty. */
    public Set<Integer> eosIds() {
        return eosIds;
    }

    /** Whether HF would put bos in front of an encoding with {@code add_special_tokens=True}. */
    public boolean addBosToken() {
        return addBosToken;
    }

    public boolean addEosToken() {
        return addEosToken;
    }

    /** The token's text as the vocab spells it (e.g. {@code "Ġthe"}, {@code "▁the"}, {@code "<0x0A>"}); null for an unused id. */
    public String tokenText(int id) {
        checkId(id);
        return idToToken[id];
    }

    /** The bytes the token contributes to decoded text (a copy). */
    public byte[] tokenBytes(int id) {
        checkId(id);
        return idToBytes[id].clone();
    }

    /** Id of a token by its vocab spelling or added-token content, or null. */
    public Integer tokenId(String tokenText) {
        Integer id = addedIds.get(tokenText);
        return id != null ? id : vocab.get(tokenText);
    }

    public boolean isSpecial(int id) {
        checkId(id);
        return special[id];
    }

    public List<AddedToken> addedTokens() {
        return addedTokens;
    }

    /** Number of BPE merges. */
    public int mergeCount() {
        return model.mergeCount();
    }

    /** Where this tokenizer was loaded from, for messages. */
    public String source() {
        return source;
    }

    byte[] bytesOf(int id) {
        return idToBytes[id];
    }

    boolean specialUnchecked(int id) {
        return special[id];
    }

    void checkId(int id) {
        if (id < 0 || id >= idToToken.length) {
            throw new IllegalArgumentException("token id " + id + " out of range [0, " + idToToken.length + ") of " + source);
        }
    }

    @Override
    public String toString() {
        return "Tokenizer[" + source + ", vocab " + vocabSize() + ", merges " + model.mergeCount()
                + ", bos " + bosId + ", eos " + eosIds + "]";
    }

    /** A growable byte array. */
    static final class ByteBuf {
        private byte[] a;
        private int n;

        ByteBuf(int capacity) {
            a = new byte[Math.max(16, capacity)];
        }

        void add(byte b) {
            if (n == a.length) {
                a = Arrays.copyOf(a, a.length * 2);
            }
            a[n++] = b;
        }

        void add(byte[] bs) {
            if (n + bs.length > a.length) {
                a = Arrays.copyOf(a, Math.max(a.length * 2, n + bs.length));
            }
            System.arraycopy(bs, 0, a, n, bs.length);
            n += bs.length;
        }

        byte[] bytes() {
            return a;
        }

        int size() {
            return n;
        }

        /** Drops the first {@code k} bytes. */
        void consume(int k) {
            System.arraycopy(a, k, a, 0, n - k);
            n -= k;
        }

        void clear() {
            n = 0;
        }
    }
}
