package io.epserve.moe;

import io.epserve.tensor.DType;
import java.nio.file.Path;

/**
 * The routed experts of one model, for a process that holds some of them (an expert worker):
 * it maps exactly the experts it is given, so the pages of the others stay on disk (DESIGN.md
 * §3.8). The model module implements it over a model's files (checkpoint tensors per expert or
 * stacked, MXFP4 blocks, the converted-experts cache of another dtype); the worker is handed an
 * {@link Opener}, so the network side never depends on how a model is stored.
 */
public interface ExpertSource extends AutoCloseable {

    /** Opens the one model a worker serves, from the worker's own command line. */
    @FunctionalInterface
    interface Opener {
        /**
         * Reads the model's header and config (a bad model fails here, before the worker serves)
         * and maps no expert yet.
         *
         * @param model       the model directory or GGUF file
         * @param expertDType the dtype to hold the routed experts in, null for as stored
         * @param cacheDir    where converted experts go when the model's folder is not writable,
         *                    null for the default
         */
        ExpertSource open(Path model, DType expertDType, Path cacheDir);
    }

    /** The model's expert layers. */
    MoeShape shape();

    /**
     * Maps exactly the experts {@code wanted} names (per layer; see {@link MoeShape#checkExperts},
     * which judges it) and checks their weights finite, except the experts {@code current} (a set
     * this source mapped before, or null) holds: they were checked then, so a re-placement reads
     * only the experts gained. The new set does not share its mapping with {@code current}:
     * closing either leaves the other intact. Throws IllegalArgumentException for a bad selection.
     */
    MappedExperts map(int[][] wanted, MappedExperts current);

    /** Releases what the source keeps open itself; the sets it mapped stay open until closed. */
    @Override
    void close();
}
