package io.epserve.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import io.epserve.format.gguf.GgufFile;
import io.epserve.format.gguf.GgufModel;
import io.epserve.model.tokenizer.GgufTokenizer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A model's chat template: the Jinja2 program in its {@code tokenizer_config.json} (or
 * {@code chat_template.jinja}) that turns a list of messages into the prompt text, rendered with
 * HubSpot's Jinjava under the settings Hugging Face transformers uses ({@code trim_blocks},
 * {@code lstrip_blocks}, a {@code raise_exception} function), with the variables {@code messages},
 * {@code add_generation_prompt}, {@code bos_token} and {@code eos_token}.
 */
public final class ChatTemplate {
    /**
     * The template of epserve's demo model, used only for a model whose config.json carries the
     * demo's {@code epserve_note} and whose tokenizer_config.json has no template (demo caches
     * written before the demo shipped one).
     */
    public static final String DEMO_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: "
            + "{{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

    /** A template failed to render (its raise_exception, or a template error): a bad request. */
    public static final class TemplateException extends RuntimeException {
        public TemplateException(String message) {
            super(message);
        }
    }

    private static final JinjavaConfig CONFIG = JinjavaConfig.newBuilder()
            .withTrimBlocks(true)
            .withLstripBlocks(true)
            // Message text must stay text: never re-render output that happens to contain {{ }}.
            .withNestedInterpretationEnabled(false)
            .withMaxOutputSize(64L << 20)
            // Jinja2's own semantics where Jinjava keeps older behaviour by default: {{- -}} trimming,
            // operator precedence, dict iteration over keys, Python-like printing of lists and dicts.
            .withLegacyOverrides(LegacyOverrides.newBuilder()
                    .withUseTrimmingForNotesAndExpressions(true)
                    .withParseWhitespaceControlStrictly(true)
                    .withAllowAdjacentTextNodes(true)
                    .withUseNaturalOperatorPrecedence(true)
                    .withEvaluateMapKeys(true)
                    .withIterateOverMapKeys(true)
                    .withUsePyishObjectMapper(true)
                    .withKeepNullableLoopValues(true)
                    .build())
            .build();

    private final String source;
    private final String bosToken;
    private final String eosToken;
    private final Jinjava jinjava;

    public ChatTemplate(String source, String bosToken, String eosToken) {
        this.source = source;
        this.bosToken = bosToken == null ? "" : bosToken;
        this.eosToken = eosToken == null ? "" : eosToken;
        this.jinjava = new Jinjava(CONFIG);
        try {
            jinjava.getGlobalContext().registerFunction(new ELFunctionDefinition("", "raise_exception",
                    ChatTemplate.class.getDeclaredMethod("raiseException", String.class)));
        } catch (NoSuchMethodException e) {
            throw new AssertionError(e);
        }
    }

    /** Called by templates as {@code raise_exception('...')} to refuse a conversation. */
    public static String raiseException(String message) {
        throw new TemplateException(message);
    }

    public String source() {
        return source;
    }

    public String bosToken() {
        return bosToken;
    }

    public String eosToken() {
        return eosToken;
    }

    /**
     * The prompt text of a conversation.
     *
     * @param messages each a map with at least {@code role} and {@code content}
     * @throws TemplateException if the template refuses the conversation or fails
     */
    public String render(List<Map<String, Object>> messages, boolean addGenerationPrompt) {
        Map<String, Object> vars = new HashMap<>();
        vars.put("messages", messages);
        vars.put("add_generation_prompt", addGenerationPrompt);
        vars.put("bos_token", bosToken);
        vars.put("eos_token", eosToken);
        RenderResult r;
        try {
            r = jinjava.renderForResult(source, vars);
        } catch (TemplateException e) {
            throw e;
        } catch (RuntimeException e) {
            TemplateException raised = findRaised(e);
            throw raised != null ? raised : new TemplateException("the chat template failed: " + e.getMessage());
        }
        for (TemplateError e : r.getErrors()) {
            if (e.getSeverity() == TemplateError.ErrorType.FATAL) {
                TemplateException raised = findRaised(e.getException());
                throw raised != null ? raised : new TemplateException("the chat template failed: " + e.getMessage());
            }
        }
        return r.getOutput();
    }

    private static TemplateException findRaised(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause()) {
            if (c instanceof TemplateException te) {
                return te;
            }
        }
        return null;
    }

    /**
     * The chat template of a model directory: {@code chat_template.jinja}, else
     * {@code tokenizer_config.json}'s {@code chat_template} (a string, or a list of named templates
     * of which "default" is used), else the demo template for the demo model, else none. For a
     * GGUF model: its metadata's {@code tokenizer.chat_template}.
     */
    public static Optional<ChatTemplate> forModel(Path dir) {
        ObjectMapper json = new ObjectMapper();
        JsonNode tc;
        if (GgufModel.isGguf(dir)) {
            // a GGUF model keeps its template in the metadata (tokenizer.chat_template)
            try (GgufFile first = GgufFile.open(GgufModel.resolve(dir).getFirst())) {
                tc = GgufTokenizer.tokenizerConfig(first.metadata());
            }
        } else {
            tc = readJson(json, dir.resolve("tokenizer_config.json"));
        }
        String bos = tokenString(tc.path("bos_token"));
        String eos = tokenString(tc.path("eos_token"));
        try {
            Path file = dir.resolve("chat_template.jinja");
            if (Files.isRegularFile(file)) {
                return Optional.of(new ChatTemplate(Files.readString(file), bos, eos));
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + dir.resolve("chat_template.jinja") + ": " + e.getMessage(), e);
        }
        JsonNode t = tc.path("chat_template");
        if (t.isTextual()) {
            return Optional.of(new ChatTemplate(t.asText(), bos, eos));
        }
        if (t.isArray()) {
            JsonNode chosen = null;
            for (JsonNode named : t) {
                if ("default".equals(named.path("name").asText()) || chosen == null) {
                    chosen = named;
                }
            }
            if (chosen != null && chosen.path("template").isTextual()) {
                return Optional.of(new ChatTemplate(chosen.path("template").asText(), bos, eos));
            }
        }
        if (readJson(json, dir.resolve("config.json")).has("epserve_note")) {
            return Optional.of(new ChatTemplate(DEMO_TEMPLATE, bos, eos));
        }
        return Optional.empty();
    }

    private static String tokenString(JsonNode n) {
        if (n.isTextual()) {
            return n.asText();
        }
        if (n.isObject() && n.path("content").isTextual()) {
            return n.path("content").asText();
        }
        return null;
    }

    private static JsonNode readJson(ObjectMapper json, Path file) {
        if (!Files.isRegularFile(file)) {
            return json.createObjectNode();
        }
        try {
            return json.readTree(file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }
}
