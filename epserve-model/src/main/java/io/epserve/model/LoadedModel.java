package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.Validation;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.InProcessDispatcher;
import java.nio.file.Path;

/**
 * A model ready to run: its checkpoint mapped, config and weights validated, experts behind an
 * in-process dispatcher. Closing it unmaps the checkpoint.
 */
public final class LoadedModel implements AutoCloseable {

    /** How to load. */
    public record Options(MoeTransformer.RouterChoice router, boolean validate, Progress progress) {
        public static Options defaults() {
            return new Options(MoeTransformer.RouterChoice.LEARNED, true, Progress.NONE);
        }

        public Options withRouter(MoeTransformer.RouterChoice r) {
            return new Options(r, validate, progress);
        }

        public Options withProgress(Progress p) {
            return new Options(router, validate, p);
        }

        public Options withValidate(boolean v) {
            return new Options(router, v, progress);
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

    public static LoadedModel load(Path dir, Options options) {
        Checkpoint ckpt = Checkpoint.open(dir);
        try {
            ModelConfig cfg = ModelConfig.from(ckpt.config());
            ModelWeights w = ModelWeights.load(cfg, ckpt);
            w.resolveAllExperts();
            if (options.validate()) {
                Validation.requireFinite(ckpt, ckpt.names(), options.progress());
            }
            ExpertDispatcher d = InProcessDispatcher.single(w, cfg.sparseLayers(), cfg.numExperts());
            return new LoadedModel(ckpt, cfg, w, d, new MoeTransformer(w, d, options.router()));
        } catch (RuntimeException e) {
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

    public MoeTransformer transformer() {
        return transformer;
    }

    @Override
    public void close() {
        dispatcher.close();
        checkpoint.close();
    }
}
