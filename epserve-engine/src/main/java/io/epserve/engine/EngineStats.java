package io.epserve.engine;

/** A snapshot of the engine's state, for gauges. */
public record EngineStats(int running, int waiting, int kvBlocksUsed, int kvBlocksTotal, int kvBlockSize,
                          long steps, long preemptions) {}
