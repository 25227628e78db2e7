package io.epserve.sim;

/** Which host each frontend and worker runs on. */
public enum HostLayout {
    /** Frontend f on host f mod N, worker w on host w mod N: attention beside experts, as in DeepSeek's deployment. */
    COLOCATED,
    /** All frontends on host 0, workers on hosts 1..N-1 in turn (the namespace test's layout); needs N >= 2. */
    FRONTEND_HOST
}
