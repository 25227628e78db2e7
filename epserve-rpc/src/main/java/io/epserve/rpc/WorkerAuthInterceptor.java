package io.epserve.rpc;

import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.Status;
import java.util.function.Supplier;

/**
 * The worker's gate on every expert-service call: checks the shared secret (when the worker has
 * one) before the call reaches the service, and hands the caller's frontend id to it through
 * {@link #FRONTEND}. The health service is not behind it (liveness only).
 */
final class WorkerAuthInterceptor implements ServerInterceptor {
    /** The calling frontend's id, or null when the call named none (only Info accepts that). */
    static final Context.Key<String> FRONTEND = Context.key("epserve-frontend-id");

    private final WorkerSecret secret;
    private final Supplier<String> name;

    WorkerAuthInterceptor(WorkerSecret secret, Supplier<String> name) {
        this.secret = secret;
        this.name = name;
    }

    @Override
    public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers, ServerCallHandler<Q, A> next) {
        if (secret != null && !secret.matches(headers.get(FrontendCredentials.AUTHORIZATION))) {
            String why = headers.containsKey(FrontendCredentials.AUTHORIZATION) ? "a wrong worker secret" : "no worker secret";
            call.close(Status.UNAUTHENTICATED.withDescription("worker " + name.get() + ": the call carries " + why
                    + " (the frontend's --worker-secret-file must hold the worker's --auth-secret-file secret)"), new Metadata());
            return new ServerCall.Listener<>() {};
        }
        String id = headers.get(FrontendCredentials.FRONTEND_ID);
        if (id != null && !FrontendCredentials.isValidId(id)) {
            call.close(Status.INVALID_ARGUMENT.withDescription("worker " + name.get() + ": malformed "
                    + FrontendCredentials.FRONTEND_ID_HEADER + " header"), new Metadata());
            return new ServerCall.Listener<>() {};
        }
        return Contexts.interceptCall(Context.current().withValue(FRONTEND, id), call, headers, next);
    }
}
