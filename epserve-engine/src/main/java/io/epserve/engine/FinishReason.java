package io.epserve.engine;

/** Why a sequence ended: a stop token or string, its token budget, or its client went away. */
public enum FinishReason { STOP, LENGTH, CANCELLED }
