package io.epserve.engine;

/**
 * A snapshot of the engine's state, for gauges and counters.
 *
 * @param prefixQueriedTokens prompt tokens looked up in the prefix cache at admission (a counter)
 * @param prefixHitTokens     of those, tokens whose KV blocks were reused (a counter)
 * @param prefixCachedBlocks  KV blocks holding a cached prompt block now (in use or evictable)
 */
public record EngineStats(int running, int waiting, int kvBlocksUsed, int kvBlocksTotal, int kvBlockSize,
                          long steps, long preemptions, long prefixQueriedTokens, long prefixHitTokens,
                          int prefixCachedBlocks) {}
