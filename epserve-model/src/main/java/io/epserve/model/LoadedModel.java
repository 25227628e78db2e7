package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.Validation;
import io.epserve.model.quant.QuantizedExperts;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.InProcessDispatcher;
import io.epserve.tensor.DType;
import java.nio.file.Path;
import java.util.List;
import java.util.Objects;
import java.util.Optional;

/**
 * A model ready to run: its checkpoint mapped, config and weights validated, routed experts
 * behind a dispatcher (one in-process worker unless told otherwise). Closing it closes the
 * dispatcher and unmaps the checkpoint.
 */
public final class LoadedModel implements AutoCloseable {

    /** Builds the dispatcher of the routed experts once the frontend's weights are loaded. */
    public interface Dispatchers {
        ExpertDispatcher create(Path modelDir, ModelConfig config, ModelWeights weights);

        /**
         * Whether the experts run in this process. When not (remote workers), the frontend neither
         * resolves nor validates the routed experts' tensors: the workers do, for their share.
         */
        default boolean local() {
            return true;
        }

        /** One in-process worker holding every expert: the single-process engine. */
        Dispatchers SINGLE = (dir, cfg, w) -> InProcessDispatcher.single(w, cfg.sparseLayers(), cfg.numExperts());
    }

    /**
     * How to load. {@code expertDType}: the dtype the routed experts are computed in (null: as
     * stored); a dtype other than the stored one is converted once into a cache file next to the
     * checkpoint and mapped from there ({@link QuantizedExperts}).
     */
    public record Options(MoeTransformer.RouterChoice router, boolean validate, Progress progress, Dispatchers dispatchers,
                          DType expertDType, KvOptions kv) {
        public Options {
            Objects.requireNonNull(kv, "kv");
        }

        /** The options as they were before the KV cache had any ({@link KvOptions#defaults()}). */
        public Options(MoeTransformer.RouterChoice router, boolean validate, Progress progress, Dispatchers dispatchers,
                       DType expertDType) {
            this(router, validate, progress, dispatchers, expertDType, KvOptions.defaults());
        }

        public static Options defaults() {
            return new Options(MoeTransformer.RouterChoice.LEARNED, true, Progress.NONE, Dispatchers.SINGLE, null, KvOptions.defaults());
        }

        public Options withRouter(MoeTransformer.RouterChoice r) {
            return new Options(r, validate, progress, dispatchers, expertDType, kv);
        }

        public Options withProgress(Progress p) {
            return new Options(router, validate, p, dispatchers, expertDType, kv);
        }

        public Options withValidate(boolean v) {
            return new Options(router, v, progress, dispatchers, expertDType, kv);
        }

        public Options withDispatchers(Dispatchers d) {
            return new Options(router, validate, progress, d, expertDType, kv);
        }

        /** Routed experts in {@code t} (Q8_0, Q4_0, Q4_K, BF16, ...); null keeps them as stored. */
        public Options withExpertDType(DType t) {
            return new Options(router, validate, progress, dispatchers, t, kv);
        }

        /** How the KV cache stores keys and values (element type; MLA compressed or expanded). */
        public Options withKv(KvOptions k) {
            return new Options(router, validate, progress, dispatchers, expertDType, k);
        }
    }

    private final Checkpoint checkpoint;
    private final ModelConfig config;
    private final ModelWeights weights;
    private final ExpertDispatcher dispatcher;
    private final MoeTransformer transformer;
    private final QuantizedExperts convertedExperts;

    private LoadedModel(Checkpoint checkpoint, ModelConfig config, ModelWeights weights, ExpertDispatcher dispatcher,
                        MoeTransformer transformer, QuantizedExperts convertedExperts) {
        this.checkpoint = checkpoint;
        this.config = config;
        this.weights = weights;
        this.dispatcher = dispatcher;
        this.transformer = transformer;
        this.convertedExperts = convertedExperts;
    }

    /** Whether a checkpoint tensor belongs to a routed expert (not a shared expert or a router). */
    public static boolean isRoutedExpertTensor(String name) {
        return name.contains(".experts.");
    }

    public static LoadedModel load(Path dir, Options options) {
        Checkpoint ckpt = Checkpoint.open(dir);
        ExpertDispatcher d = null;
        QuantizedExperts q = null;
        try {
            ModelConfig cfg = ModelConfig.from(ckpt.config());
            ModelWeights w = ModelWeights.load(cfg, ckpt);
            boolean local = options.dispatchers().local();
            if (options.expertDType() != null && cfg.ffn().expertBias()) {
                throw new IllegalArgumentException(cfg.architecture().hfName() + ": its experts are computed on as stored (MXFP4 with "
                        + "biases); --expert-dtype does not apply");
            }
            if (local && options.expertDType() != null && !storedAs(w, cfg, options.expertDType())) {
                q = QuantizedExperts.open(dir, cfg, options.expertDType(),
                        QuantizedExperts.CacheOptions.defaults().withProgress(options.progress()));
                w = w.withRoutedExperts(q);
            }
            if (local) {
                w.resolveAllExperts();
            }
            if (options.validate()) {
                // Converted experts are checked when converted (and their scales here); the
                // checkpoint's own copies are then never touched, so their pages stay on disk.
                boolean scanExperts = local && q == null;
                // raw byte tensors (MXFP4 blocks and scales) are checked when repacked, not scanned as floats
                List<String> names = ckpt.names().stream().filter(n -> ckpt.entry(n).dtype() != null)
                        .filter(n -> scanExperts || !isRoutedExpertTensor(n)).toList();
                Validation.requireFinite(ckpt, names, options.progress());
                if (q != null) {
                    q.requireFinite(options.progress());
                }
            }
            d = options.dispatchers().create(dir, cfg, w);
            return new LoadedModel(ckpt, cfg, w, d, new MoeTransformer(w, d, options.router(), options.kv()), q);
        } catch (RuntimeException e) {
            if (d != null) {
                d.close();
            }
            if (q != null) {
                q.close();
            }
            ckpt.close();
            throw e;
        }
    }

    /** Whether every routed expert tensor is already stored as {@code t} (then no copy is made). */
    public static boolean storedAs(ModelWeights w, ModelConfig cfg, DType t) {
        for (int l = 0; l < cfg.layers(); l++) {
            if (cfg.isSparse(l)) {
                for (int e = 0; e < cfg.numExperts(); e++) {
                    ExpertWeights x = w.experts().expert(l, e);
                    if (x.gate().dtype() != t || x.up().dtype() != t || x.down().dtype() != t) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** The converted routed experts (with {@link Options#expertDType}), if any were made. */
    public Optional<QuantizedExperts> convertedExperts() {
        return Optional.ofNullable(convertedExperts);
    }

    public Checkpoint checkpoint() {
        return checkpoint;
    }

    public ModelConfig config() {
        return config;
    }

    public ModelWeights weights() {
        return weights;
    }

    public ExpertDispatcher dispatcher() {
        return dispatcher;
    }

    public MoeTransformer transformer() {
        return transformer;
    }

    @Override
    public void close() {
        dispatcher.close();
        if (convertedExperts != null) {
            convertedExperts.close();
        }
        checkpoint.close();
    }
}
