/**
 * Expert parallelism over gRPC (DESIGN.md §1): the versioned protocol
 * ({@code epserve/expert/v1/expert.proto}, generated into {@code io.epserve.rpc.v1}), the expert
 * worker ({@link io.epserve.rpc.WorkerServer}, {@link io.epserve.rpc.WorkerProcess}) and the
 * frontend's {@link io.epserve.rpc.GrpcExpertDispatcher}, which computes the same function as the
 * in-process dispatcher. {@link io.epserve.rpc.LocalWorkerProcesses} runs workers as child
 * processes for local clusters and tests.
 *
 * <p>The module depends on the compute modules {@code epserve-moe} and {@code epserve-format},
 * never on {@code epserve-model} (the build enforces it): a dispatcher knows a model by its
 * {@link io.epserve.moe.MoeShape}, and a worker maps its experts through the
 * {@link io.epserve.moe.ExpertSource} it is given, so the wire and the model's storage change apart.
 */
package io.epserve.rpc;
