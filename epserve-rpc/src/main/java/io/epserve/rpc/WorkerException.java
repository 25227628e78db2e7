package io.epserve.rpc;

import io.epserve.moe.ExpertRequest;
import io.grpc.Status;

/**
 * An expert worker failed a dispatch: it died, did not answer within the deadline, answered
 * garbage (wrong id, wrong byte count, non-finite values) or refused the request. The message
 * names the worker and the layer. The dispatch that threw produced no output; the dispatcher stays
 * usable and reconnects on the next dispatch.
 *
 * <p>{@link #request()} is the request that worker was given, so a caller can re-run the step's
 * share elsewhere ({@link GrpcExpertDispatcher#computeOn}) once replicas exist.
 */
public final class WorkerException extends RuntimeException {
    /** What went wrong, for a caller that reacts differently (retry elsewhere vs give up). */
    public enum Kind {
        /** The connection failed or the worker closed the stream (died, restarted, unreachable). */
        UNAVAILABLE,
        /** No answer within the deadline. */
        DEADLINE,
        /** An answer that cannot be right: unknown id, wrong byte count, NaN/Inf. */
        GARBAGE,
        /** The worker refused the request with an error status. */
        REFUSED
    }

    private final String worker;
    private final int layer;
    private final Kind kind;
    private final transient ExpertRequest request;
    private final Status.Code code;

    public WorkerException(String worker, int layer, Kind kind, Status.Code code, ExpertRequest request, String message, Throwable cause) {
        super(message, cause);
        this.worker = worker;
        this.layer = layer;
        this.kind = kind;
        this.code = code;
        this.request = request;
    }

    /** The worker's address as in the placement. */
    public String worker() {
        return worker;
    }

    /** The MoE layer of the failed dispatch; -1 for Assign. */
    public int layer() {
        return layer;
    }

    public Kind kind() {
        return kind;
    }

    /** The gRPC status code where the failure came as a status, else null. */
    public Status.Code code() {
        return code;
    }

    /** The request the worker was given; null for Assign. */
    public ExpertRequest request() {
        return request;
    }
}
