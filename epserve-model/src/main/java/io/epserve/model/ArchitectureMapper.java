package io.epserve.model;

import io.epserve.tensor.RopeStyle;
import java.util.Arrays;

/**
 * Turns one architecture's config.json fields into the typed parts of a {@link ModelConfig}, and
 * names the architecture-specific tensors. Adding an architecture is adding a mapper (and its
 * {@link Architecture} constant); the forward pass reads only the typed parts.
 */
interface ArchitectureMapper {

    /** What the common fields already fixed: the mapper builds the rest from them and config.json. */
    record Common(int hidden, int layers, int heads, int kvHeads, int headDim) {}

    /** The architecture-specific typed parts. */
    record Parts(AttentionConfig attention, FfnConfig ffn, RouterConfig router, RopeStyle ropeStyle) {}

    Parts map(ConfigReader r, Common common);

    /** The shared expert's module name under the MoE prefix. */
    default String sharedExpertName() {
        return "shared_expert";
    }

    /** The router's module name under the MoE prefix. */
    default String routerName() {
        return "gate";
    }

    /** Every layer full attention. */
    static int[] noWindows(int layers) {
        return new int[layers];
    }

    static boolean[] allSparse(int layers) {
        boolean[] s = new boolean[layers];
        Arrays.fill(s, true);
        return s;
    }
}
