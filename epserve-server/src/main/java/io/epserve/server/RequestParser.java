package io.epserve.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.model.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Reads and checks the body of {@code /v1/completions} and {@code /v1/chat/completions} as
 * OpenAI documents them, plus vLLM's {@code ignore_eos}, {@code top_k}, {@code min_p},
 * {@code skip_special_tokens} and {@code return_token_ids}. Every refusal is a 400 that names the field ({@code param});
 * an unknown model is a 404; a prompt that cannot fit the context a 400 with code
 * {@code context_length_exceeded} naming the prompt's field, as OpenAI answers it. Bodies must be exactly
 * one JSON object. Fields that would
 * change the output in ways this server does not implement (n > 1, logprobs, echo, penalties,
 * logit_bias, tools, JSON mode) are refused rather than silently ignored.
 */
final class RequestParser {
    /** OpenAI's documented default for the legacy completions endpoint. */
    static final int COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
    static final int MAX_STOP_STRINGS = 16;

    /**
     * Reads one JSON document and nothing after it: trailing bytes, a second object and repeated
     * keys are refused rather than silently dropped.
     */
    private final ObjectReader reader;
    private final ServedModel model;
    /**
     * The most UTF-8 bytes of prompt text that could still fit the context: no token stands for
     * more than the longest token's bytes, so longer text is refused before it is tokenized. The
     * factor covers normalizers that shrink text (and the Metaspace space marker).
     */
    private final long maxPromptBytes;

    RequestParser(ObjectMapper json, ServedModel model) {
        this.reader = json.reader().with(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
                .with(StreamReadFeature.STRICT_DUPLICATE_DETECTION);
        this.model = model;
        this.maxPromptBytes = 4L * longestTokenBytes(model.tokenizer()) * model.maxModelLen();
    }

    private static int longestTokenBytes(Tokenizer tokenizer) {
        int longest = 1;
        for (int id = 0; id < tokenizer.vocabSize(); id++) {
            try {
                longest = Math.max(longest, tokenizer.tokenBytes(id).length);
            } catch (RuntimeException unused) {
                // an id the vocab leaves unused stands for no text
            }
        }
        for (var added : tokenizer.addedTokens()) {
            longest = Math.max(longest, added.content().getBytes(StandardCharsets.UTF_8).length);
        }
        return longest;
    }

    ParsedRequest parse(Endpoint endpoint, byte[] body) {
        JsonNode root;
        try {
            root = reader.readTree(body);
        } catch (JsonProcessingException e) {
            throw ApiError.badRequest("the request body is not valid JSON: " + e.getOriginalMessage(), null);
        } catch (IOException e) {
            throw ApiError.badRequest("cannot read the request body: " + e.getMessage(), null);
        }
        if (root == null || root.isMissingNode() || !root.isObject()) {
            throw ApiError.badRequest("the request body must be a JSON object", null);
        }
        String modelName = optString(root, "model");
        if (modelName != null && !modelName.equals(model.id())) {
            throw ApiError.notFound("The model '" + modelName + "' does not exist (this server serves '" + model.id() + "')",
                    "model", "model_not_found");
        }
        refuseUnsupported(root, endpoint);

        int[] prompt = endpoint == Endpoint.CHAT ? chatPrompt(root) : completionPrompt(root);
        if (prompt.length == 0) {
            throw ApiError.badRequest("the prompt is empty", endpoint.promptParam);
        }
        if (prompt.length >= model.maxModelLen()) {
            throw tooLong(endpoint, prompt.length + " tokens");
        }

        Long maxCompletion = optLong(root, "max_completion_tokens", 1, Integer.MAX_VALUE);
        Long maxTokensField = optLong(root, "max_tokens", 1, Integer.MAX_VALUE);
        Long requested = maxCompletion != null ? maxCompletion : maxTokensField;
        String maxParam = maxCompletion != null ? "max_completion_tokens" : "max_tokens";
        int room = model.maxModelLen() - prompt.length;
        int maxTokens;
        if (requested == null) {
            maxTokens = endpoint == Endpoint.CHAT ? room : Math.min(COMPLETIONS_DEFAULT_MAX_TOKENS, room);
        } else if (requested > room) {
            throw ApiError.badRequest("This model's maximum context length is " + model.maxModelLen() + " tokens; the prompt has "
                    + prompt.length + " tokens and " + maxParam + " is " + requested + ", which leaves room for at most "
                    + room + " generated tokens", maxParam, "context_length_exceeded");
        } else {
            maxTokens = (int) (long) requested;
        }

        SamplingDefaults d = model.defaults();
        Double temperature = optDouble(root, "temperature", 0.0, 2.0, true, true);
        Double topP = optDouble(root, "top_p", 0.0, 1.0, false, true);
        Long topK = optLong(root, "top_k", -1, Integer.MAX_VALUE);
        Double minP = optDouble(root, "min_p", 0.0, 1.0, true, true);
        Long seed = optLong(root, "seed", Long.MIN_VALUE, Long.MAX_VALUE);
        SamplingParams sampling = new SamplingParams(
                temperature != null ? temperature : d.temperature(),
                topK != null ? (int) (long) topK : d.topK(),
                topP != null ? topP : d.topP(),
                minP != null ? minP : d.minP(),
                seed != null ? seed : ThreadLocalRandom.current().nextLong());

        optString(root, "user"); // OpenAI's end-user id: not used here, but a string when given
        boolean stream = Boolean.TRUE.equals(optBool(root, "stream"));
        boolean includeUsage = false;
        JsonNode so = root.get("stream_options");
        if (so != null && !so.isNull()) {
            if (!so.isObject()) {
                throw ApiError.badRequest("'stream_options' must be an object", "stream_options");
            }
            includeUsage = Boolean.TRUE.equals(optBool(so, "include_usage", "stream_options.include_usage"));
        }
        boolean ignoreEos = Boolean.TRUE.equals(optBool(root, "ignore_eos"));
        Boolean skipSpecial = optBool(root, "skip_special_tokens");
        boolean returnTokenIds = Boolean.TRUE.equals(optBool(root, "return_token_ids"));
        return new ParsedRequest(endpoint, prompt, sampling, maxTokens, stopStrings(root), stream, includeUsage, ignoreEos,
                skipSpecial == null || skipSpecial, returnTokenIds);
    }

    // ---------------------------------------------------------------- prompts

    /** prompt: a string, a list of token ids, or a list holding exactly one of either (n = 1). */
    private int[] completionPrompt(JsonNode root) {
        JsonNode p = root.get("prompt");
        if (p == null || p.isNull()) {
            throw ApiError.badRequest("'prompt' is required", "prompt");
        }
        if (p.isTextual()) {
            return encode(Endpoint.COMPLETIONS, p.asText());
        }
        if (p.isArray()) {
            if (p.isEmpty()) {
                throw ApiError.badRequest("'prompt' is an empty list", "prompt");
            }
            if (p.get(0).isTextual() || p.get(0).isArray()) {
                if (p.size() != 1) {
                    throw ApiError.badRequest("only one prompt per request is supported, got " + p.size(), "prompt");
                }
                return p.get(0).isTextual() ? encode(Endpoint.COMPLETIONS, p.get(0).asText()) : tokenIds(p.get(0));
            }
            return tokenIds(p);
        }
        throw ApiError.badRequest("'prompt' must be a string or a list of token ids", "prompt");
    }

    /** Tokenizes prompt text, after refusing text too long to fit whatever it tokenizes to. */
    private int[] encode(Endpoint endpoint, String text) {
        checkSize(endpoint, utf8Length(text));
        return endpoint == Endpoint.CHAT ? model.tokenizer().encodeWithSpecial(text, false) : model.tokenizer().encodeWithSpecial(text);
    }

    private void checkSize(Endpoint endpoint, long bytes) {
        if (bytes > maxPromptBytes) {
            throw tooLong(endpoint, bytes + " bytes of text, more than any " + model.maxModelLen() + " tokens hold");
        }
    }

    private ApiError tooLong(Endpoint endpoint, String promptSize) {
        return ApiError.contextTooLong("This model's maximum context length is " + model.maxModelLen()
                + " tokens, and the prompt has " + promptSize + "; shorten the prompt", endpoint.promptParam);
    }

    private static long utf8Length(CharSequence s) {
        long n = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            n += c < 0x80 ? 1 : c < 0x800 ? 2 : Character.isSurrogate(c) ? 2 : 3; // a surrogate pair: 4 bytes in all
        }
        return n;
    }

    private int[] tokenIds(JsonNode list) {
        if (list.size() >= model.maxModelLen()) {
            throw tooLong(Endpoint.COMPLETIONS, list.size() + " tokens");
        }
        int[] ids = new int[list.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode t = list.get(i);
            if (!t.isIntegralNumber() || !t.canConvertToInt() || t.asInt() < 0 || t.asInt() >= model.vocabSize()) {
                throw ApiError.badRequest("prompt token " + i + " is not a token id in [0, " + model.vocabSize() + "): " + t, "prompt");
            }
            ids[i] = t.asInt();
        }
        return ids;
    }

    private int[] chatPrompt(JsonNode root) {
        JsonNode msgs = root.get("messages");
        if (msgs == null || !msgs.isArray() || msgs.isEmpty()) {
            throw ApiError.badRequest("'messages' must be a non-empty list of messages", "messages");
        }
        List<Map<String, Object>> messages = new ArrayList<>();
        long bytes = 0;
        for (int i = 0; i < msgs.size(); i++) {
            JsonNode m = msgs.get(i);
            String where = "messages[" + i + "]";
            if (!m.isObject()) {
                throw ApiError.badRequest(where + " must be an object", where);
            }
            JsonNode role = m.get("role");
            if (role == null || !role.isTextual() || role.asText().isEmpty()) {
                throw ApiError.badRequest(where + ".role must be a non-empty string", where + ".role");
            }
            Map<String, Object> msg = new LinkedHashMap<>();
            msg.put("role", role.asText());
            String content = content(m.get("content"), where + ".content");
            bytes += utf8Length(content);
            msg.put("content", content);
            JsonNode name = m.get("name");
            if (name != null && !name.isNull()) {
                if (!name.isTextual()) {
                    throw ApiError.badRequest(where + ".name must be a string", where + ".name");
                }
                msg.put("name", name.asText());
            }
            messages.add(msg);
        }
        checkSize(Endpoint.CHAT, bytes); // before the template renders and the tokenizer runs
        ChatTemplate template = model.chatTemplate().orElseThrow(() -> ApiError.badRequest("the model '" + model.id()
                + "' has no chat template (no chat_template in its tokenizer_config.json), so it cannot serve "
                + "/v1/chat/completions; use /v1/completions with a prompt", "messages", "chat_template_missing"));
        Boolean addGen = optBool(root, "add_generation_prompt");
        String text;
        try {
            text = template.render(messages, addGen == null || addGen);
        } catch (ChatTemplate.TemplateException e) {
            throw ApiError.badRequest("the chat template refused the messages: " + e.getMessage(), "messages");
        }
        // The template writes bos itself when the model wants it (as Hugging Face's apply_chat_template).
        return encode(Endpoint.CHAT, text);
    }

    /** A message's content: a string, null, or a list of {"type": "text", "text": ...} parts (joined). */
    private static String content(JsonNode c, String where) {
        if (c == null || c.isNull()) {
            return "";
        }
        if (c.isTextual()) {
            return c.asText();
        }
        if (c.isArray()) {
            StringBuilder sb = new StringBuilder();
            for (JsonNode part : c) {
                if (!part.isObject() || !"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                    throw ApiError.badRequest(where + ": only text content parts ({\"type\": \"text\", \"text\": ...}) are supported", where);
                }
                sb.append(part.get("text").asText());
            }
            return sb.toString();
        }
        throw ApiError.badRequest(where + " must be a string or a list of text parts", where);
    }

    private List<String> stopStrings(JsonNode root) {
        JsonNode s = root.get("stop");
        List<String> out = new ArrayList<>();
        if (s == null || s.isNull()) {
            return out;
        }
        if (s.isTextual()) {
            out.add(s.asText());
        } else if (s.isArray()) {
            for (JsonNode e : s) {
                if (!e.isTextual()) {
                    throw ApiError.badRequest("'stop' must be a string or a list of strings", "stop");
                }
                out.add(e.asText());
            }
        } else {
            throw ApiError.badRequest("'stop' must be a string or a list of strings", "stop");
        }
        if (out.size() > MAX_STOP_STRINGS) {
            throw ApiError.badRequest("at most " + MAX_STOP_STRINGS + " stop strings, got " + out.size(), "stop");
        }
        if (out.stream().anyMatch(String::isEmpty)) {
            throw ApiError.badRequest("a stop string is empty", "stop");
        }
        return out;
    }

    private static void refuseUnsupported(JsonNode root, Endpoint endpoint) {
        Long n = optLong(root, "n", 1, Integer.MAX_VALUE);
        if (n != null && n != 1) {
            throw ApiError.badRequest("only n = 1 is supported, got " + n, "n");
        }
        Long bestOf = optLong(root, "best_of", 1, Integer.MAX_VALUE);
        if (bestOf != null && bestOf != 1) {
            throw ApiError.badRequest("only best_of = 1 is supported, got " + bestOf, "best_of");
        }
        if (Boolean.TRUE.equals(optBool(root, "echo"))) {
            throw ApiError.badRequest("echo is not supported", "echo");
        }
        JsonNode lp = root.get("logprobs");
        if (lp != null && !lp.isNull() && !(lp.isBoolean() && !lp.asBoolean())) {
            throw ApiError.badRequest("logprobs are not supported", "logprobs");
        }
        Long topLogprobs = optLong(root, "top_logprobs", 0, 20);
        if (topLogprobs != null && topLogprobs > 0) {
            throw ApiError.badRequest("top_logprobs are not supported (logprobs are not)", "top_logprobs");
        }
        for (String penalty : List.of("presence_penalty", "frequency_penalty")) {
            Double v = optDouble(root, penalty, -2.0, 2.0, true, true);
            if (v != null && v != 0.0) {
                throw ApiError.badRequest(penalty + " is not supported (only 0)", penalty);
            }
        }
        JsonNode bias = root.get("logit_bias");
        if (bias != null && !bias.isNull() && !(bias.isObject() && bias.isEmpty())) {
            throw ApiError.badRequest("logit_bias is not supported", "logit_bias");
        }
        JsonNode tools = root.get("tools");
        if (tools != null && !tools.isNull() && !(tools.isArray() && tools.isEmpty())) {
            throw ApiError.badRequest("tools are not supported", "tools");
        }
        JsonNode rf = root.get("response_format");
        if (rf != null && !rf.isNull() && !(rf.isObject() && "text".equals(rf.path("type").asText()))) {
            throw ApiError.badRequest("only response_format {\"type\": \"text\"} is supported", "response_format");
        }
        String suffix = endpoint == Endpoint.COMPLETIONS ? optString(root, "suffix") : null;
        if (suffix != null && !suffix.isEmpty()) {
            throw ApiError.badRequest("suffix is not supported", "suffix");
        }
    }

    // ---------------------------------------------------------------- typed fields

    private static String optString(JsonNode o, String name) {
        JsonNode v = o.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isTextual()) {
            throw ApiError.badRequest("'" + name + "' must be a string", name);
        }
        return v.asText();
    }

    private static Boolean optBool(JsonNode o, String name) {
        return optBool(o, name, name);
    }

    private static Boolean optBool(JsonNode o, String name, String param) {
        JsonNode v = o.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isBoolean()) {
            throw ApiError.badRequest("'" + param + "' must be true or false", param);
        }
        return v.asBoolean();
    }

    /** An integer field (a JSON number without a fraction) within [min, max], or null when absent. */
    private static Long optLong(JsonNode o, String name, long min, long max) {
        JsonNode v = o.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        boolean integral = v.isIntegralNumber() && v.canConvertToLong()
                || v.isFloatingPointNumber() && v.asDouble() == Math.rint(v.asDouble()) && Math.abs(v.asDouble()) < 9.0e15;
        if (!integral) {
            throw ApiError.badRequest("'" + name + "' must be an integer, got " + v, name);
        }
        long x = v.asLong();
        if (x < min || x > max) {
            throw ApiError.badRequest("'" + name + "' must be " + range(min, max) + ", got " + x, name);
        }
        return x;
    }

    private static String range(long min, long max) {
        if (max == Integer.MAX_VALUE || max == Long.MAX_VALUE) {
            return "at least " + min;
        }
        return "in [" + min + ", " + max + "]";
    }

    /** A number field within the bounds, or null when absent. */
    private static Double optDouble(JsonNode o, String name, double min, double max, boolean minInclusive, boolean maxInclusive) {
        JsonNode v = o.get(name);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isNumber()) {
            throw ApiError.badRequest("'" + name + "' must be a number, got " + v, name);
        }
        double x = v.asDouble();
        boolean ok = (minInclusive ? x >= min : x > min) && (maxInclusive ? x <= max : x < max);
        if (!ok || Double.isNaN(x)) {
            throw ApiError.badRequest("'" + name + "' must be in " + (minInclusive ? "[" : "(") + min + ", " + max
                    + (maxInclusive ? "]" : ")") + ", got " + x, name);
        }
        return x;
    }
}
