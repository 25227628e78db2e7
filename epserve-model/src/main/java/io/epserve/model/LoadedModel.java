package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.Validation;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.InProcessDispatcher;
import java.nio.file.Path;
import java.util.List;

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

    /** How to load. */
    public record Options(MoeTransformer.RouterChoice router, boolean validate, Progress progress, Dispatchers dispatchers) {
        public static Options defaults() {
            return new Options(MoeTransformer.RouterChoice.LEARNED, true, Progress.NONE, Dispatchers.SINGLE);
        }

        public Options withRouter(MoeTransformer.RouterChoice r) {
            return new Options(r, validate, progress, dispatchers);
        }

        public Options withProgress(Progress p) {
            return new Options(router, validate, p, dispatchers);
        }

        public Options withValidate(boolean v) {
            return new Options(router, v, progress, dispatchers);
        }

        public Options withDispatchers(Dispatchers d) {
            return new Options(router, validate, progress, d);
        }
    }

    private final Checkpoint checkpoint;
    private final ModelConfig config;
    private final ModelWeights weights;
    private final ExpertDispatcher dispatcher;
    private final MoeTransformer transformer;

    private LoadedModel(Checkpoint checkpoint, ModelConfig config, ModelWeights weights, ExpertDispatcher dispatcher,
                        MoeTransformer transformer) {
        this.checkpoint = checkpoint;
        this.config = config;
        this.weights = weights;
        this.dispatcher = dispatcher;
        this.transformer = transformer;
    }

    /** Whether a checkpoint tensor belongs to a routed expert (not a shared expert or a router). */
    public static boolean isRoutedExpertTensor(String name) {
        return name.contains(".experts.");
    }

    public static LoadedModel load(Path dir, Options options) {
        Checkpoint ckpt = Checkpoint.open(dir);
        ExpertDispatcher d = null;
        try {
            ModelConfig cfg = ModelConfig.from(ckpt.config());
            ModelWeights w = ModelWeights.load(cfg, ckpt);
            boolean local = options.dispatchers().local();
            if (local) {
                w.resolveAllExperts();
            }
            if (options.validate()) {
                List<String> names = local ? ckpt.names() : ckpt.names().stream().filter(n -> !isRoutedExpertTensor(n)).toList();
                Validation.requireFinite(ckpt, names, options.progress());
            }
            d = options.dispatchers().create(dir, cfg, w);
            return new LoadedModel(ckpt, cfg, w, d, new MoeTransformer(w, d, options.router()));
        } catch (RuntimeException e) {
            if (d != null) {
                d.close();
            }
            ckpt.close();
            throw e;
        }
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
        checkpoint.close();
    }
}
