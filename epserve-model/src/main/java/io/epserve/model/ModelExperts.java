package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsFile;
import io.epserve.format.Validation;
import io.epserve.model.quant.QuantizedExperts;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertSource;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.moe.MappedExperts;
import io.epserve.moe.MoeShape;
import io.epserve.moe.RoutingResult;
import io.epserve.tensor.DType;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * A model's routed experts as the processes that compute them map them, read from its files in
 * every layout the model reads ({@link CheckpointExperts}: per expert, stacked, MXFP4) or, in
 * another dtype, from its converted-experts cache ({@link QuantizedExperts}, built on first use).
 * An expert worker holds exactly its share ({@link #map}: a checkpoint mapped per tensor, so the
 * other experts' pages stay on disk); a frontend whose workers fail computes every expert itself
 * from the same files ({@link #frontendDispatcher}), so it computes what they would.
 */
public final class ModelExperts implements ExpertSource {
    private final Path dir;
    private final DType expertDType;
    private final QuantizedExperts.CacheOptions cacheOptions;
    private final ModelConfig config;
    private final MoeShape shape;
    /** The checkpoint opened to read the config (header only), handed to the first {@link #map}; null after. */
    private Checkpoint preopened;

    private ModelExperts(Path dir, DType expertDType, QuantizedExperts.CacheOptions cacheOptions, ModelConfig config,
                         Checkpoint preopened) {
        this.dir = dir;
        this.expertDType = expertDType;
        this.cacheOptions = cacheOptions;
        this.config = config;
        this.shape = config.moeShape();
        this.preopened = preopened;
    }

    /**
     * Opens the model in {@code dir} (its header and config; a bad model fails here) for a worker
     * that holds its experts in {@code expertDType} (null: as stored), with the converted-experts
     * cache under {@code cacheDir} when the model's folder is not writable (null: the default).
     * Maps no expert yet. Throws CheckpointException for a bad model.
     */
    public static ModelExperts open(Path dir, DType expertDType, Path cacheDir) {
        // a worker maps only its experts' tensors, from the checkpoint and from the cache alike
        QuantizedExperts.CacheOptions o = QuantizedExperts.CacheOptions.defaults().withMapping(SafetensorsFile.Mapping.PER_TENSOR);
        if (cacheDir != null) {
            o = o.withFallbackDir(cacheDir.resolve("quantized-experts"));
        }
        Checkpoint ckpt = Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR);
        try {
            return new ModelExperts(dir, expertDType, o, ModelConfig.from(ckpt.config()), ckpt);
        } catch (RuntimeException e) {
            ckpt.close();
            throw e;
        }
    }

    @Override
    public MoeShape shape() {
        return shape;
    }

    /**
     * Resolves (shape-checks) exactly the wanted experts and validates them finite, as stored
     * (no expert dtype, or the checkpoint already stores them so) or from the converted-experts
     * cache (built first when missing). Each set maps through a checkpoint of its own, so closing
     * the set a worker no longer serves unmaps the experts it dropped. Throws
     * IllegalArgumentException for a bad selection and CheckpointException for a bad model.
     */
    @Override
    public MappedExperts map(int[][] wanted, MappedExperts current) {
        int[][] layers = shape.checkExperts(wanted);
        Checkpoint pre = takePreopened();
        Checkpoint ckpt = pre != null ? pre : Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR);
        QuantizedExperts converted = null;
        try {
            CheckpointExperts experts = new CheckpointExperts(config, ckpt);
            if (expertDType != null && !storedAs(ckpt, experts, layers, expertDType)) {
                converted = QuantizedExperts.open(dir, config, expertDType, cacheOptions);
            }
            ExpertWeights[][] held = new ExpertWeights[config.layers()][];
            Set<String> tensors = new LinkedHashSet<>();
            for (int l = 0; l < config.layers(); l++) {
                if (!config.isSparse(l)) {
                    continue;
                }
                held[l] = new ExpertWeights[config.numExperts()];
                for (int e : layers[l]) {
                    boolean checked = current != null && current.holds(l, e);
                    if (converted != null) {
                        held[l][e] = converted.expert(l, e);
                        if (!checked) {
                            converted.requireFinite(l, e);
                        }
                    } else {
                        held[l][e] = experts.expert(l, e);
                        if (!checked) {
                            // raw byte tensors (MXFP4 blocks and scales) were checked when repacked
                            experts.tensorNames(l, e).stream().filter(n -> ckpt.entry(n).dtype() != null).forEach(tensors::add);
                        }
                    }
                }
            }
            Validation.requireFinite(ckpt, tensors, Progress.NONE);
            return new Mapped(ckpt, converted, held);
        } catch (RuntimeException e) {
            if (converted != null) {
                converted.close();
            }
            ckpt.close();
            throw e;
        }
    }

    private synchronized Checkpoint takePreopened() {
        Checkpoint c = preopened;
        preopened = null;
        return c;
    }

    /**
     * Whether the checkpoint already stores every wanted expert's tensors as {@code t} (then no
     * conversion). Reads the header only: resolving an expert would map its tensors.
     */
    private static boolean storedAs(Checkpoint ckpt, CheckpointExperts experts, int[][] layers, DType t) {
        for (int l = 0; l < layers.length; l++) {
            for (int e : layers[l]) {
                for (String n : experts.tensorNames(l, e)) {
                    if (!ckpt.has(n) || ckpt.entry(n).dtype() != t) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** Unmaps the checkpoint opened for the config if no {@link #map} took it. */
    @Override
    public void close() {
        Checkpoint c = takePreopened();
        if (c != null) {
            c.close();
        }
    }

    /** One mapped set: the experts resolved through its own checkpoint (or the converted cache). */
    private static final class Mapped implements MappedExperts {
        private final Checkpoint checkpoint;
        /** The converted experts the held ones come from, or null (checkpoint experts). */
        private final QuantizedExperts converted;
        /** [layer][expert] -> weights, null where not held. */
        private final ExpertWeights[][] held;

        Mapped(Checkpoint checkpoint, QuantizedExperts converted, ExpertWeights[][] held) {
            this.checkpoint = checkpoint;
            this.converted = converted;
            this.held = held;
        }

        @Override
        public boolean holds(int layer, int expert) {
            return layer >= 0 && layer < held.length && held[layer] != null && expert >= 0 && expert < held[layer].length
                    && held[layer][expert] != null;
        }

        @Override
        public ExpertWeights expert(int layer, int expert) {
            if (!holds(layer, expert)) {
                throw new IllegalArgumentException("expert " + expert + " of layer " + layer + " is not mapped here");
            }
            return held[layer][expert];
        }

        @Override
        public long mappedBytes() {
            return checkpoint.mappedBytes() + (converted != null ? converted.mappedBytes() : 0);
        }

        @Override
        public boolean fromConvertedCache() {
            return converted != null;
        }

        @Override
        public void close() {
            if (converted != null) {
                converted.close();
            }
            checkpoint.close();
        }
    }

    /**
     * The frontend's own dispatcher over every routed expert, for failover: the checkpoint's
     * experts, or the converted-experts cache the workers map when they hold another dtype (it
     * exists: the workers built it), so the frontend computes exactly what they would.
     */
    public static ExpertDispatcher frontendDispatcher(Path modelDir, ModelConfig cfg, ModelWeights weights, DType expertDType) {
        if (expertDType == null || LoadedModel.storedAs(weights, cfg, expertDType)) {
            return InProcessDispatcher.single(weights, cfg.sparseLayers(), cfg.numExperts());
        }
        QuantizedExperts converted = QuantizedExperts.open(modelDir, cfg, expertDType, QuantizedExperts.CacheOptions.defaults());
        InProcessDispatcher d = InProcessDispatcher.single(weights.withRoutedExperts(converted), cfg.sparseLayers(), cfg.numExperts());
        return new ExpertDispatcher() {
            @Override
            public void dispatch(int layer, float[] hidden, int hiddenSize, RoutingResult routing, float[] out) {
                d.dispatch(layer, hidden, hiddenSize, routing, out);
            }

            @Override
            public void close() {
                d.close();
                converted.close();
            }
        };
    }
}
