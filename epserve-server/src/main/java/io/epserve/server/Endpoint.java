package io.epserve.server;

/** The two generation endpoints; {@link #label} names them in metrics. */
enum Endpoint {
    COMPLETIONS("completions", "text_completion", "cmpl-", "prompt"),
    CHAT("chat_completions", "chat.completion", "chatcmpl-", "messages");

    final String label;
    final String object;
    final String idPrefix;
    /** The request field that holds the prompt, which errors about the prompt name. */
    final String promptParam;

    Endpoint(String label, String object, String idPrefix, String promptParam) {
        this.promptParam = promptParam;
        this.label = label;
        this.object = object;
        this.idPrefix = idPrefix;
    }
}
