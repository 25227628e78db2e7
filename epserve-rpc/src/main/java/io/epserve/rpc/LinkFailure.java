package io.epserve.rpc;

import io.grpc.Status;

/** Why a request failed, without the worker and layer (the WorkerException adds them). */
final class LinkFailure extends RuntimeException {
    final WorkerException.Kind kind;
    final Status.Code code;

    LinkFailure(WorkerException.Kind kind, Status.Code code, String message) {
        super(message, null, false, false);
        this.kind = kind;
        this.code = code;
    }

    /** How a failed gRPC call counts: a deadline, a worker that is gone or broke, or a refusal. */
    static WorkerException.Kind kindOf(Status s) {
        return switch (s.getCode()) {
            case DEADLINE_EXCEEDED -> WorkerException.Kind.DEADLINE;
            case UNAVAILABLE, CANCELLED, UNKNOWN, ABORTED, INTERNAL, DATA_LOSS -> WorkerException.Kind.UNAVAILABLE;
            default -> WorkerException.Kind.REFUSED;
        };
    }

    /** A status for a message: its code, then its description (or, without one, its cause). */
    static String describe(Status s) {
        return s.getCode() + (s.getDescription() == null ? "" : ": " + s.getDescription())
                + (s.getCause() != null && s.getDescription() == null ? ": " + s.getCause() : "");
    }
}
