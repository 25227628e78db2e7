package io.epserve.rpc;

import io.epserve.format.Checkpoint;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsFile;
import io.epserve.format.Validation;
import io.epserve.model.CheckpointExperts;
import io.epserve.model.ModelConfig;
import io.epserve.model.quant.QuantizedExperts;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.ExpertWorker;
import io.epserve.tensor.DType;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * What one Assign gave a worker: a checkpoint mapped per tensor, and exactly the experts of its
 * placement, resolved (shape-checked) and validated finite. The store refuses every other expert,
 * so a bug upstream cannot silently map more of the model (DESIGN.md §3.8). With an expert dtype
 * (e.g. Q8_0) the experts come from the model's converted-experts cache instead, mapped per
 * tensor too (only this worker's experts), and the checkpoint's own expert pages stay unmapped.
 */
final class WorkerShare implements ExpertStore {
    final Path modelDir;
    final long epoch;
    final Checkpoint checkpoint;
    final ModelConfig config;
    /** [layer][expert] -> weights, null where not held. */
    private final ExpertWeights[][] held;
    /** [layer] -> held experts ascending (empty for layers without any). */
    final int[][] layers;
    final int expertCount;
    final ExpertWorker worker;
    /** The dtype asked for in Assign (null: as stored). */
    final DType expertDType;
    /** The converted experts the held ones come from, or null (checkpoint experts). */
    private final QuantizedExperts converted;

    private WorkerShare(Path modelDir, long epoch, Checkpoint checkpoint, ModelConfig config, ExpertWeights[][] held,
                        int[][] layers, int expertCount, String name, DType expertDType, QuantizedExperts converted) {
        this.modelDir = modelDir;
        this.epoch = epoch;
        this.checkpoint = checkpoint;
        this.config = config;
        this.held = held;
        this.layers = layers;
        this.expertCount = expertCount;
        this.expertDType = expertDType;
        this.converted = converted;
        this.worker = new ExpertWorker(name, this, config.numExperts());
    }

    /**
     * Opens the model (or takes the pre-opened checkpoint) and resolves exactly the given experts,
     * as stored ({@code expertDType} null, or the checkpoint already stores them so) or from the
     * converted-experts cache in {@code expertDType} (built first when missing).
     * {@code wanted[layer]} are global expert ids (null or empty: none of that layer). Throws
     * IllegalArgumentException for a bad layer/expert or dtype and CheckpointException for a bad model.
     */
    static WorkerShare open(WorkerModel model, long epoch, int[][] wanted, String name, Checkpoint preopened) {
        return open(model, epoch, wanted, name, preopened, null);
    }

    /**
     * As {@link #open(WorkerModel, long, int[][], String, Checkpoint)}; experts that
     * {@code current} (a share of the same model, or null) holds were validated when it was
     * opened and are not read again: a re-placement reads only the experts a worker gains.
     */
    static WorkerShare open(WorkerModel model, long epoch, int[][] wanted, String name, Checkpoint preopened, WorkerShare current) {
        Path modelDir = model.dir();
        DType expertDType = model.expertDType();
        Checkpoint ckpt = preopened != null ? preopened : Checkpoint.open(modelDir, SafetensorsFile.Mapping.PER_TENSOR);
        QuantizedExperts converted = null;
        try {
            ModelConfig cfg = ModelConfig.from(ckpt.config());
            if (wanted.length > cfg.layers()) {
                throw new IllegalArgumentException("layer " + (wanted.length - 1) + " outside [0, " + cfg.layers() + ")");
            }
            CheckpointExperts experts = new CheckpointExperts(cfg, ckpt);
            if (expertDType != null && !storedAs(ckpt, experts, cfg, wanted, expertDType)) {
                converted = QuantizedExperts.open(modelDir, cfg, expertDType, model.cacheOptions());
            }
            ExpertWeights[][] held = new ExpertWeights[cfg.layers()][];
            int[][] layers = new int[cfg.layers()][];
            Set<String> tensors = new LinkedHashSet<>();
            int count = 0;
            for (int l = 0; l < cfg.layers(); l++) {
                int[] ids = l < wanted.length && wanted[l] != null ? wanted[l].clone() : new int[0];
                Arrays.sort(ids);
                if (ids.length > 0 && !cfg.isSparse(l)) {
                    throw new IllegalArgumentException("layer " + l + " has no routed experts");
                }
                for (int i = 0; i < ids.length; i++) {
                    if (ids[i] < 0 || ids[i] >= cfg.numExperts()) {
                        throw new IllegalArgumentException("expert " + ids[i] + " of layer " + l + " outside [0, " + cfg.numExperts() + ")");
                    }
                    if (i > 0 && ids[i] == ids[i - 1]) {
                        throw new IllegalArgumentException("expert " + ids[i] + " of layer " + l + " listed twice");
                    }
                }
                layers[l] = ids;
                if (cfg.isSparse(l)) {
                    held[l] = new ExpertWeights[cfg.numExperts()];
                    for (int e : ids) {
                        boolean checked = current != null && current.holds(l, e);
                        if (converted != null) {
                            held[l][e] = converted.expert(l, e);
                            if (!checked) {
                                converted.requireFinite(l, e);
                            }
                        } else {
                            held[l][e] = experts.expert(l, e);
                            if (!checked) {
                                tensors.addAll(experts.tensorNames(l, e));
                            }
                        }
                        count++;
                    }
                }
            }
            Validation.requireFinite(ckpt, tensors, Progress.NONE);
            return new WorkerShare(modelDir, epoch, ckpt, cfg, held, layers, count, name, expertDType, converted);
        } catch (RuntimeException e) {
            if (converted != null) {
                converted.close();
            }
            ckpt.close();
            throw e;
        }
    }

    /**
     * Whether the checkpoint already stores every wanted expert's tensors as {@code t} (then no
     * conversion). Reads the header only: resolving an expert would map its tensors.
     */
    private static boolean storedAs(Checkpoint ckpt, CheckpointExperts experts, ModelConfig cfg, int[][] wanted, DType t) {
        for (int l = 0; l < Math.min(wanted.length, cfg.layers()); l++) {
            if (wanted[l] == null || !cfg.isSparse(l)) {
                continue;
            }
            for (int e : wanted[l]) {
                if (e < 0 || e >= cfg.numExperts()) {
                    continue; // refused below, with its own message
                }
                for (String n : experts.tensorNames(l, e)) {
                    if (!ckpt.has(n) || ckpt.entry(n).dtype() != t) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** The same share under a new placement epoch (same model, same experts): nothing is re-mapped. */
    WorkerShare withEpoch(long newEpoch, String name) {
        return new WorkerShare(modelDir, newEpoch, checkpoint, config, held, layers, expertCount, name, expertDType, converted);
    }

    /** Whether this share holds exactly {@code wanted} (the worker's model never changes). */
    boolean sameExperts(int[][] wanted) {
        for (int l = 0; l < layers.length; l++) {
            int[] ids = l < wanted.length && wanted[l] != null ? wanted[l].clone() : new int[0];
            Arrays.sort(ids);
            if (!Arrays.equals(ids, layers[l])) {
                return false;
            }
        }
        return wanted.length <= layers.length;
    }

    boolean holds(int layer, int expert) {
        return layer >= 0 && layer < held.length && held[layer] != null && expert >= 0 && expert < held[layer].length
                && held[layer][expert] != null;
    }

    @Override
    public ExpertWeights expert(int layer, int expert) {
        if (!holds(layer, expert)) {
            throw new IllegalArgumentException("worker " + worker.name() + " does not hold expert " + expert + " of layer " + layer);
        }
        return held[layer][expert];
    }

    /** Bytes mapped for the held experts: checkpoint tensors, or the converted cache's. */
    long mappedBytes() {
        return checkpoint.mappedBytes() + (converted != null ? converted.mappedBytes() : 0);
    }

    /** Whether the held experts come from the converted-experts cache (not the checkpoint's tensors). */
    boolean fromConvertedCache() {
        return converted != null;
    }

    /** Experts this share holds that {@code previous} (or null) did not: what an Assign had to map and check. */
    int gainedOver(WorkerShare previous) {
        int n = 0;
        for (int l = 0; l < layers.length; l++) {
            for (int e : layers[l]) {
                if (previous == null || !previous.holds(l, e)) {
                    n++;
                }
            }
        }
        return n;
    }

    void close() {
        if (converted != null) {
            converted.close();
        }
        checkpoint.close();
    }
}
