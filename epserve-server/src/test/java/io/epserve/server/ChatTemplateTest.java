package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ChatTemplateTest {
    @TempDir
    Path tmp;

    private static final List<Map<String, Object>> CONVERSATION = List.of(
            Map.of("role", "system", "content", "Be brief."),
            Map.of("role", "user", "content", "Hi {{ not a tag }}"));

    @Test
    void demoTemplate() {
        ChatTemplate t = new ChatTemplate(ChatTemplate.DEMO_TEMPLATE, "<|bos|>", "<|eos|>");
        assertThat(t.render(CONVERSATION, true))
                .isEqualTo("<|bos|>system: Be brief.\nuser: Hi {{ not a tag }}\nassistant:");
        assertThat(t.render(CONVERSATION, false)).isEqualTo("<|bos|>system: Be brief.\nuser: Hi {{ not a tag }}\n");
    }

    /** A ChatML template as Hugging Face checkpoints write it: trim_blocks, string concatenation, loop variables, raise_exception. */
    @Test
    void chatMlTemplateWithHuggingFaceSettings() {
        String src = """
                {% for message in messages %}
                    {% if message['role'] not in ['system', 'user', 'assistant'] %}
                        {{ raise_exception('Unknown role: ' + message['role']) }}
                    {% endif %}
                    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>' + '\\n' -}}
                {% endfor %}
                {% if add_generation_prompt %}
                    {{- '<|im_start|>assistant\\n' -}}
                {% endif %}""";
        ChatTemplate t = new ChatTemplate(src, null, "<|im_end|>");
        assertThat(t.render(List.of(Map.of("role", "user", "content", "  hello ")), true))
                .isEqualTo("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");
        assertThatThrownBy(() -> t.render(List.of(Map.of("role", "robot", "content", "x")), true))
                .isInstanceOf(ChatTemplate.TemplateException.class)
                .hasMessageContaining("Unknown role: robot");
    }

    @Test
    void fromTokenizerConfigOrChatTemplateFileOrNone() throws Exception {
        Files.writeString(tmp.resolve("config.json"), "{}");
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\"}");
        assertThat(ChatTemplate.forModel(tmp)).isEmpty();

        Files.writeString(tmp.resolve("tokenizer_config.json"),
                "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"</s>\", \"chat_template\": \"{{ bos_token }}{{ messages[0]['content'] }}{{ eos_token }}\"}");
        ChatTemplate t = ChatTemplate.forModel(tmp).orElseThrow();
        assertThat(t.render(List.of(Map.of("role", "user", "content", "x")), true)).isEqualTo("<s>x</s>");

        Files.writeString(tmp.resolve("chat_template.jinja"), "[{{ messages | length }}]");
        assertThat(ChatTemplate.forModel(tmp).orElseThrow().render(CONVERSATION, true)).isEqualTo("[2]");
    }

    @Test
    void demoModelFallsBackToTheDemoTemplate() throws Exception {
        Files.writeString(tmp.resolve("config.json"), "{\"epserve_note\": \"demo\"}");
        Files.writeString(tmp.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|bos|>\", \"eos_token\": \"<|eos|>\"}");
        assertThat(ChatTemplate.forModel(tmp).orElseThrow().source()).isEqualTo(ChatTemplate.DEMO_TEMPLATE);
    }
}
