package io.epserve.operator;

import java.time.Duration;
import java.util.OptionalDouble;

/**
 * How many workers to run: between {@code min} and {@code max}; with a target, as many as carry the measured
 * routed-token rate at {@code targetTokensPerWorkerSecond} each; never two changes within {@code cooldown}.
 */
public record ScalingPolicy(int min, int max, OptionalDouble targetTokensPerWorkerSecond, Duration cooldown) {
}
