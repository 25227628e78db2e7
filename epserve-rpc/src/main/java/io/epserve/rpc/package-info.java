/**
 * Expert parallelism over gRPC (DESIGN.md §1): the versioned protocol
 * ({@code epserve/expert/v1/expert.proto}, generated into {@code io.epserve.rpc.v1}), the expert
 * worker ({@link io.epserve.rpc.WorkerServer}, {@link io.epserve.rpc.WorkerProcessMain}) and the
 * frontend's {@link io.epserve.rpc.GrpcExpertDispatcher}, which computes the same function as the
 * in-process dispatcher. {@link io.epserve.rpc.LocalWorkerProcesses} runs workers as child
 * processes for local clusters and tests.
 */
package io.epserve.rpc;
