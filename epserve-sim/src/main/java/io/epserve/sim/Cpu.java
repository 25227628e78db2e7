package io.epserve.sim;

/**
 * Which processes compete for cores. A process (frontend or worker) runs its tasks one at a time
 * on its threads; where cores are shared, every runnable thread (a task's kernel threads, a
 * message's software) gets an equal share of them, at most one core, as the operating system's
 * fair scheduler gives it: more runnable threads than cores slow every one of them alike.
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
