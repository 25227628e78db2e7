package io.epserve.server;

/** The two generation endpoints; {@link #label} names them in metrics. */
enum Endpoint {
    COMPLETIONS("completions", "text_completion", "cmpl-"),
    CHAT("chat_completions", "chat.completion", "chatcmpl-");

    final String label;
    final String object;
    final String idPrefix;

    Endpoint(String label, String object, String idPrefix) {
        this.label = label;
        this.object = object;
        this.idPrefix = idPrefix;
    }
}
