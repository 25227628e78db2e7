package io.epserve.sim;

/**
 * Which processes compete for cores. A process (frontend or worker) runs its tasks one at a time
 * on up to its thread count of cores; where cores are shared, a task waits (first come, first
 * served) until it has them.
 */
public sealed interface Cpu {

    /** Every process has its own cores: no competition (separate devices). */
    record Dedicated() implements Cpu {}

    /** The processes of one host share its {@code cores}. */
    record PerHost(int cores) implements Cpu {
        public PerHost {
            if (cores < 1) {
                throw new IllegalArgumentException("cores per host must be >= 1, got " + cores);
            }
        }
    }

    /**
     * Every process on every host shares one machine's {@code cores}: network namespaces and
     * loopback processes on this machine.
     */
    record OneMachine(int cores) implements Cpu {
        public OneMachine {
            if (cores < 1) {
                throw new IllegalArgumentException("machine cores must be >= 1, got " + cores);
            }
        }
    }
}
