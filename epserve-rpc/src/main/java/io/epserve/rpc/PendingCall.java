package io.epserve.rpc;

import io.epserve.moe.ExpertRequest;
import io.epserve.rpc.v1.WireDType;
import io.grpc.Status;
import java.util.concurrent.atomic.AtomicInteger;

/** A request on the wire; completed once, by its answer or by a failure. */
final class PendingCall {
    final long id;
    final ExpertRequest request;
    final WireDType dtype;
    /** The worker it went to (over its stream or its shared-memory ring). */
    final WorkerLink link;
    final DispatchStep step;
    final long sentNanos = System.nanoTime();
    private final AtomicInteger state = new AtomicInteger(); // 0 waiting, 1 done
    volatile float[] result;
    /** The answer of an exact request ({@link WireTensors#encodeExact}); result stays null then. */
    volatile long[] exact;
    volatile LinkFailure failure;

    PendingCall(long id, ExpertRequest request, WireDType dtype, WorkerLink link, DispatchStep step) {
        this.id = id;
        this.request = request;
        this.dtype = dtype;
        this.link = link;
        this.step = step;
    }

    boolean isDone() {
        return state.get() == 1;
    }

    void complete(float[] r) {
        if (state.compareAndSet(0, 1)) {
            result = r;
            step.done(false);
        }
    }

    void completeExact(long[] r) {
        if (state.compareAndSet(0, 1)) {
            exact = r;
            step.done(false);
        }
    }

    void fail(LinkFailure f) {
        if (state.compareAndSet(0, 1)) {
            failure = f;
            step.done(f.code != Status.Code.FAILED_PRECONDITION);
        }
    }
}
