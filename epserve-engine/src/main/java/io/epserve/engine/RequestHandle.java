package io.epserve.engine;

/** A submitted request, as its caller holds it. */
public interface RequestHandle {
    String id();

    /** The client went away: stop at the next step and free the request's KV blocks. */
    void cancel();

    /** The API layer matched a stop string: end as STOP at the next step. */
    void finish();
}
