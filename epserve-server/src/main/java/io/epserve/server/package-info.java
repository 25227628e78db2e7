/**
 * The frontend's HTTP side (DESIGN.md §1, §2): {@link io.epserve.server.EpServer} serves the
 * OpenAI-compatible API over the continuous-batching {@link io.epserve.engine.Engine}, with SSE
 * streaming, Prometheus metrics ({@link io.epserve.server.ServerMetrics}), health and readiness,
 * and a live view of throughput, latency and expert load.
 *
 * <pre>
 *   Netty event loop ──▶ HttpHandler ──(virtual thread: parse, chat template, tokenize, submit)──▶ Engine
 *        ▲                    │                                                                    │
 *        └── CompletionExchange ◀──────── TokenListener (engine thread, hops to the event loop) ───┘
 *                 │ StreamingDecoder → StopStrings → SSE chunk / final JSON
 * </pre>
 * Engine events reach {@link io.epserve.server.ServerMetrics} as an {@link io.epserve.engine.EngineObserver};
 * a once-a-second sampler turns its counters into the live view's history and expert heatmap.
 */
package io.epserve.server;
