package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.rpc.v1.Holder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** One frontend at a time, a lease, a fence: WorkerOwnership on a hand-driven clock. */
class WorkerOwnershipTest {
    final AtomicLong now = new AtomicLong();
    final WorkerOwnership o = new WorkerOwnership(Duration.ofSeconds(30), () -> "w1", now::get);

    static Status.Code code(Runnable r) {
        try {
            r.run();
            return Status.Code.OK;
        } catch (StatusRuntimeException e) {
            return e.getStatus().getCode();
        }
    }

    void take(String frontend, long epoch) {
        o.beforeAssign(frontend, epoch);
        o.assigned(frontend, epoch);
    }

    @Test
    void aHeldWorkerRefusesOthersUntilReleased() {
        assertThat(o.holderFor("a")).isEqualTo(Holder.HOLDER_NONE);
        assertThat(code(() -> o.requireHolder("a"))).as("not assigned: assign, then retry").isEqualTo(Status.Code.FAILED_PRECONDITION);
        take("a", 1);
        assertThat(o.holderFor("a")).isEqualTo(Holder.HOLDER_CALLER);
        assertThat(o.holderFor("b")).isEqualTo(Holder.HOLDER_OTHER);
        assertThat(code(() -> o.beforeAssign("b", 5))).isEqualTo(Status.Code.PERMISSION_DENIED);
        assertThat(code(() -> o.requireHolder("b"))).isEqualTo(Status.Code.PERMISSION_DENIED);
        assertThat(code(() -> o.release("b"))).isEqualTo(Status.Code.PERMISSION_DENIED);
        assertThatThrownBy(() -> o.requireHolder("b")).hasMessageContaining("worker w1 is held by another frontend");
        assertThat(code(() -> o.requireHolder("a"))).isEqualTo(Status.Code.OK);
        assertThat(o.release("a")).isTrue();
        assertThat(o.release("a")).isFalse();
        take("b", 1);
        assertThat(o.holderFor("b")).isEqualTo(Holder.HOLDER_CALLER);
        assertThat(code(() -> o.requireHolder(null))).isEqualTo(Status.Code.INVALID_ARGUMENT);
    }

    @Test
    void aRefusalDoesNotNameTheHolder() {
        take("frontend-7f3c9a", 1);
        assertThatThrownBy(() -> o.beforeAssign("frontend-19de44", 1)).hasMessageContaining("held by another frontend")
                .hasMessageNotContaining("frontend-7f3c9a");
    }

    @Test
    void theLeaseExpiresOnlyAfterTheHolderFellSilent() {
        take("a", 1);
        now.addAndGet(Duration.ofSeconds(29).toNanos());
        o.requireHolder("a"); // a call renews the lease
        now.addAndGet(Duration.ofSeconds(29).toNanos());
        assertThat(code(() -> o.beforeAssign("b", 1))).isEqualTo(Status.Code.PERMISSION_DENIED);
        now.addAndGet(Duration.ofSeconds(2).toNanos());
        assertThat(o.holderFor("b")).as("silent for 31 s: takeable").isEqualTo(Holder.HOLDER_NONE);
        take("b", 1);
        assertThat(code(() -> o.requireHolder("a"))).as("the old holder is fenced off").isEqualTo(Status.Code.PERMISSION_DENIED);
    }

    @Test
    void theEpochFencesStaleAssignsOfTheHolder() {
        take("a", 5);
        take("a", 5); // the same again (a retry, or a worker that restarted): fine
        take("a", 7);
        assertThat(code(() -> o.beforeAssign("a", 6))).isEqualTo(Status.Code.FAILED_PRECONDITION);
        assertThatThrownBy(() -> o.beforeAssign("a", 6)).hasMessageContaining("epoch 6 is older than epoch 7");
        // a new holder starts its own epochs
        o.release("a");
        take("b", 1);
        assertThat(o.holderFor("b")).isEqualTo(Holder.HOLDER_CALLER);
    }
}
