package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionChoice;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.completions.CompletionUsage;
import com.openai.models.models.Model;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The official OpenAI Java client against the real server and engine. */
class OpenAiClientTest {
    static final String PROMPT = "The experts of a mixture";
    static TestStack stack;
    static OpenAIClient client;

    @BeforeAll
    static void start() {
        stack = TestStack.shared();
        client = OpenAIOkHttpClient.builder().baseUrl(stack.server.baseUri() + "/v1").apiKey("unused")
                .maxRetries(0).timeout(Duration.ofSeconds(60)).build();
    }

    private static CompletionCreateParams.Builder completion(int maxTokens) {
        return CompletionCreateParams.builder().model(ServedModel.DEMO_NAME).prompt(PROMPT).maxTokens(maxTokens)
                .temperature(0.8).seed(42L).putAdditionalBodyProperty("ignore_eos", JsonValue.from(true));
    }

    /** seed is deprecated in OpenAI's chat API but is what open servers (epserve, vLLM) honour for reproducible sampling. */
    @SuppressWarnings("deprecation")
    private static ChatCompletionCreateParams.Builder chat(int maxTokens) {
        return ChatCompletionCreateParams.builder().model(ServedModel.DEMO_NAME)
                .addSystemMessage("You are terse.").addUserMessage("Name three experts.")
                .maxCompletionTokens(maxTokens).temperature(0.8).seed(7L)
                .putAdditionalBodyProperty("ignore_eos", JsonValue.from(true));
    }

    @Test
    void listsTheModel() {
        List<Model> models = client.models().list().data();
        assertThat(models).extracting(Model::id).containsExactly(ServedModel.DEMO_NAME);
        assertThat(client.models().retrieve(ServedModel.DEMO_NAME).ownedBy()).isEqualTo("epserve");
    }

    @Test
    void completionWithUsageThenTheSameStreamed() {
        Completion c = client.completions().create(completion(12).build());
        assertThat(c.choices()).hasSize(1);
        CompletionChoice choice = c.choices().get(0);
        assertThat(choice.finishReason()).isEqualTo(CompletionChoice.FinishReason.LENGTH);
        assertThat(choice.text()).isNotEmpty();
        CompletionUsage u = c.usage().orElseThrow();
        int promptTokens = stack.served.tokenizer().encodeWithSpecial(PROMPT).length;
        assertThat(u.promptTokens()).isEqualTo(promptTokens);
        assertThat(u.completionTokens()).isEqualTo(12);
        assertThat(u.totalTokens()).isEqualTo(promptTokens + 12);

        StringBuilder text = new StringBuilder();
        List<String> finish = new ArrayList<>();
        List<CompletionUsage> usages = new ArrayList<>();
        try (StreamResponse<Completion> s = client.completions().createStreaming(completion(12)
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build())) {
            s.stream().forEach(chunk -> {
                chunk.usage().ifPresent(usages::add);
                for (CompletionChoice ch : chunk.choices()) {
                    text.append(ch.text());
                    ch._finishReason().asKnown().ifPresent(f -> finish.add(f.asString()));
                }
            });
        }
        assertThat(text.toString()).as("same seed, same text, streamed or not").isEqualTo(choice.text());
        assertThat(finish).containsExactly("length");
        assertThat(usages).hasSize(1);
        assertThat(usages.get(0).completionTokens()).isEqualTo(12);
        assertThat(usages.get(0).promptTokens()).isEqualTo(promptTokens);
    }

    @Test
    void chatWithUsageThenTheSameStreamed() {
        ChatCompletion c = client.chat().completions().create(chat(10).build());
        ChatCompletion.Choice choice = c.choices().get(0);
        assertThat(choice.finishReason()).isEqualTo(ChatCompletion.Choice.FinishReason.LENGTH);
        String content = choice.message().content().orElseThrow();
        assertThat(content).isNotEmpty();
        String rendered = stack.served.chatTemplate().orElseThrow().render(List.of(
                Map.of("role", "system", "content", "You are terse."),
                Map.of("role", "user", "content", "Name three experts.")), true);
        int promptTokens = stack.served.tokenizer().encodeWithSpecial(rendered, false).length;
        CompletionUsage u = c.usage().orElseThrow();
        assertThat(u.promptTokens()).isEqualTo(promptTokens);
        assertThat(u.completionTokens()).isEqualTo(10);
        assertThat(u.totalTokens()).isEqualTo(promptTokens + 10);

        StringBuilder text = new StringBuilder();
        List<String> roles = new ArrayList<>();
        List<ChatCompletionChunk.Choice.FinishReason> finish = new ArrayList<>();
        List<CompletionUsage> usages = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> s = client.chat().completions().createStreaming(chat(10)
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build())) {
            s.stream().forEach(chunk -> {
                chunk.usage().ifPresent(usages::add);
                for (ChatCompletionChunk.Choice ch : chunk.choices()) {
                    ch.delta().content().ifPresent(text::append);
                    ch.delta().role().ifPresent(r -> roles.add(r.asString()));
                    ch.finishReason().ifPresent(finish::add);
                }
            });
        }
        assertThat(text.toString()).isEqualTo(content);
        assertThat(roles).containsExactly("assistant");
        assertThat(finish).containsExactly(ChatCompletionChunk.Choice.FinishReason.LENGTH);
        assertThat(usages).singleElement().satisfies(x -> assertThat(x.completionTokens()).isEqualTo(10));
    }

    /** Streams once without stops to learn each token's text, then stops on a string that spans two tokens. */
    @Test
    void stopStringAcrossTokensEndsTheTextBeforeIt() {
        List<String> pieces = new ArrayList<>();
        try (StreamResponse<Completion> s = client.completions().createStreaming(completion(24).build())) {
            s.stream().forEach(chunk -> chunk.choices().forEach(ch -> {
                if (!ch.text().isEmpty()) {
                    pieces.add(ch.text());
                }
            }));
        }
        String full = String.join("", pieces);
        String stop = null;
        int at = -1;
        int offset = 0;
        for (int i = 0; i + 1 < pieces.size() && stop == null; i++) {
            offset += pieces.get(i).length();
            String candidate = pieces.get(i).substring(pieces.get(i).length() - 1) + pieces.get(i + 1).charAt(0);
            if (i > 0 && full.indexOf(candidate) == offset - 1) {
                stop = candidate;
                at = offset - 1;
            }
        }
        assertThat(stop).as("a two-char stop string spanning tokens in %s", pieces).isNotNull();

        Completion c = client.completions().create(completion(24).stopOfStrings(List.of("\u0000never", stop)).build());
        assertThat(c.choices().get(0).text()).isEqualTo(full.substring(0, at));
        assertThat(c.choices().get(0).finishReason()).isEqualTo(CompletionChoice.FinishReason.STOP);
        assertThat(c.usage().orElseThrow().completionTokens()).isLessThan(24);

        StringBuilder streamed = new StringBuilder();
        List<String> finish = new ArrayList<>();
        try (StreamResponse<Completion> s = client.completions().createStreaming(completion(24).stop(stop).build())) {
            s.stream().forEach(chunk -> chunk.choices().forEach(ch -> {
                streamed.append(ch.text());
                ch._finishReason().asKnown().ifPresent(f -> finish.add(f.asString()));
            }));
        }
        assertThat(streamed.toString()).isEqualTo(full.substring(0, at));
        assertThat(finish).containsExactly("stop");
    }

    @Test
    void chatStopString() {
        String content = client.chat().completions().create(chat(16).build()).choices().get(0).message().content().orElseThrow();
        int cut = content.length() / 2;
        String stop = content.substring(cut, Math.min(content.length(), cut + 2));
        int at = content.indexOf(stop);
        ChatCompletion c = client.chat().completions().create(chat(16).stop(stop).build());
        assertThat(c.choices().get(0).message().content().orElseThrow()).isEqualTo(content.substring(0, at));
        assertThat(c.choices().get(0).finishReason()).isEqualTo(ChatCompletion.Choice.FinishReason.STOP);
    }
}
