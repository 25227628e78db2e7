package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.Tensor;
import java.util.List;

/**
 * The routed experts of a checkpoint, resolved by name on first use and shape-checked. Only the
 * experts asked for are touched, so with per-tensor mapping an expert worker maps its share and
 * nothing else. Both layouts are accepted:
 * <pre>
 *   per expert:  {prefix}.experts.{e}.{w1|gate_proj}.weight [I, H]
 *                {prefix}.experts.{e}.{w3|up_proj}.weight   [I, H]
 *                {prefix}.experts.{e}.{w2|down_proj}.weight [H, I]
 *   stacked:     {prefix}.experts.gate_up_proj [E, 2I, H]   (rows 0..I-1 gate, I..2I-1 up)
 *                {prefix}.experts.down_proj    [E, H, I]    (transformers 5)
 *   MXFP4:       {prefix}.experts.{gate_up,down}_proj_{blocks,scales,bias}  (gpt-oss, {@link Mxfp4Experts})
 * </pre>
 * with {prefix} = model.layers.L.block_sparse_moe (Mixtral) or model.layers.L.mlp. Experts with
 * biases (gpt-oss) are read in the MXFP4 layout.
 */
public final class CheckpointExperts implements ExpertStore {
    private final ModelConfig cfg;
    private final Checkpoint ckpt;
    private final ExpertWeights[][] experts;

    public CheckpointExperts(ModelConfig cfg, Checkpoint ckpt) {
        if (cfg.ffn().expertBias()) {
            Mxfp4Experts.requireBlockShapes(cfg);
        }
        this.cfg = cfg;
        this.ckpt = ckpt;
        this.experts = new ExpertWeights[cfg.layers()][];
        for (int l = 0; l < cfg.layers(); l++) {
            if (cfg.isSparse(l)) {
                experts[l] = new ExpertWeights[cfg.numExperts()];
            }
        }
    }

    /** model.layers.L.block_sparse_moe or model.layers.L.mlp, whichever the checkpoint uses. */
    public static String moePrefix(Checkpoint ckpt, int layer) {
        String p = "model.layers." + layer + ".";
        return ckpt.has(p + "block_sparse_moe.gate.weight") || ckpt.has(p + "block_sparse_moe.experts.0.w1.weight")
                ? p + "block_sparse_moe" : p + "mlp";
    }

    @Override
    public ExpertWeights expert(int layer, int e) {
        if (layer < 0 || layer >= experts.length || experts[layer] == null) {
            throw new IllegalArgumentException("layer " + layer + " has no routed experts");
        }
        if (e < 0 || e >= cfg.numExperts()) {
            throw new IllegalArgumentException("expert " + e + " outside [0, " + cfg.numExperts() + ")");
        }
        ExpertWeights w = experts[layer][e];
        if (w == null) {
            synchronized (this) {
                w = experts[layer][e];
                if (w == null) {
                    w = resolve(layer, e);
                    experts[layer][e] = w;
                }
            }
        }
        return w;
    }

    /**
     * Names of the tensors that hold one expert (for a stacked layout, the whole stacked tensors;
     * for MXFP4 also the raw block and scale tensors, which have no float dtype).
     */
    public List<String> tensorNames(int layer, int e) {
        String ep = moePrefix(ckpt, layer) + ".experts.";
        if (cfg.ffn().expertBias()) {
            return Mxfp4Experts.tensorNames(ep);
        }
        if (ckpt.has(ep + "gate_up_proj")) {
            return List.of(ep + "gate_up_proj", ep + "down_proj");
        }
        String pe = ep + e + ".";
        if (ckpt.has(pe + "w1.weight")) {
            return List.of(pe + "w1.weight", pe + "w3.weight", pe + "w2.weight");
        }
        return List.of(pe + "gate_proj.weight", pe + "up_proj.weight", pe + "down_proj.weight");
    }

    private ExpertWeights resolve(int layer, int e) {
        int h = cfg.hidden();
        int inter = cfg.moeIntermediate();
        String ep = moePrefix(ckpt, layer) + ".experts.";
        if (cfg.ffn().expertBias()) {
            return Mxfp4Experts.resolve(cfg, ckpt, ep, e);
        }
        if (ckpt.has(ep + "gate_up_proj")) {
            Tensor gu = ckpt.tensor(ep + "gate_up_proj");
            // with 2I == H both layouts have one shape: it is read as transformers 5 writes it
            if (gu.rank() == 3 && gu.dim(0) == cfg.numExperts() && gu.dim(1) == h && gu.dim(2) == 2L * inter && 2L * inter != h) {
                throw new CheckpointException(ckpt.fileOf(ep + "gate_up_proj") + ": tensor '" + ep + "gate_up_proj' is stored "
                        + "[E, H, 2I] (transposed); epserve reads the transformers 5 layout [E, 2I, H]");
            }
            gu = ckpt.tensor(ep + "gate_up_proj", cfg.numExperts(), 2L * inter, h).select(e);
            Tensor down = ckpt.tensor(ep + "down_proj", cfg.numExperts(), h, inter).select(e);
            return new ExpertWeights(gu.rowSlice(0, inter), gu.rowSlice(inter, 2L * inter), down);
        }
        String pe = ep + e + ".";
        if (ckpt.has(pe + "w1.weight")) {
            return new ExpertWeights(ckpt.tensor(pe + "w1.weight", inter, h), ckpt.tensor(pe + "w3.weight", inter, h),
                    ckpt.tensor(pe + "w2.weight", h, inter));
        }
        return new ExpertWeights(ckpt.tensor(pe + "gate_proj.weight", inter, h), ckpt.tensor(pe + "up_proj.weight", inter, h),
                ckpt.tensor(pe + "down_proj.weight", h, inter));
    }
}
