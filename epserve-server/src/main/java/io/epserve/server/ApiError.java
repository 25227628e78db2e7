package io.epserve.server;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A request the API refuses, as OpenAI reports it: an HTTP status and
 * {@code {"error": {"message", "type", "param", "code"}}}. Thrown while a request is parsed and
 * checked (a bad body is found deep in the parser); the handler turns it into the response.
 */
final class ApiError extends RuntimeException {
    final int status;
    final String type;
    final String param;
    final String code;
    /** Seconds for a Retry-After header (429, 503), or 0 for none. */
    final int retryAfterSeconds;

    ApiError(int status, String type, String message, String param, String code, int retryAfterSeconds) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.retryAfterSeconds = retryAfterSeconds;
    }

    static ApiError badRequest(String message, String param) {
        return new ApiError(400, "invalid_request_error", message, param, null, 0);
    }

    static ApiError badRequest(String message, String param, String code) {
        return new ApiError(400, "invalid_request_error", message, param, code, 0);
    }

    static ApiError notFound(String message, String param, String code) {
        return new ApiError(404, "invalid_request_error", message, param, code, 0);
    }

    /** The prompt (or prompt + max tokens) does not fit the context: 400, as OpenAI answers it. */
    static ApiError contextTooLong(String message, String param) {
        return new ApiError(400, "invalid_request_error", message, param, "context_length_exceeded", 0);
    }

    static ApiError busy(String message, int retryAfterSeconds) {
        return new ApiError(429, "rate_limit_error", message, null, "queue_full", Math.max(1, retryAfterSeconds));
    }

    static ApiError notReady(String message) {
        return new ApiError(503, "service_unavailable", message, null, "not_ready", 1);
    }

    static ApiError internal(String message) {
        return new ApiError(500, "server_error", message, null, null, 0);
    }

    ObjectNode toJson() {
        ObjectNode root = JsonNodeFactory.instance.objectNode();
        ObjectNode e = root.putObject("error");
        e.put("message", getMessage());
        e.put("type", type);
        e.put("param", param);
        e.put("code", code);
        return root;
    }
}
