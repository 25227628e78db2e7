package io.epserve.model;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.moe.ExpertWeights;
import io.epserve.moe.GatedActivation;
import io.epserve.tensor.DType;
import io.epserve.tensor.Quantizer;
import io.epserve.tensor.Tensor;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;

/**
 * gpt-oss's routed experts as OpenAI ships them: MXFP4 blocks and E8M0 scales per projection,
 * with biases, resolved on first use:
 * <pre>
 *   {prefix}.gate_up_proj_blocks [E, 2I, H/32, 16] U8   row 2i: gate_i, row 2i+1: up_i
 *   {prefix}.gate_up_proj_scales [E, 2I, H/32]     U8   weight = fp4 · 2^(scale − 127)
 *   {prefix}.gate_up_proj_bias   [E, 2I]
 *   {prefix}.down_proj_blocks    [E, H, I/32, 16]  U8
 *   {prefix}.down_proj_scales    [E, H, I/32]      U8
 *   {prefix}.down_proj_bias      [E, H]
 * </pre>
 * with {prefix} = model.layers.L.mlp.experts; in a block, byte j holds weights 2j (low nibble)
 * and 2j + 1 (high). Each expert's rows are repacked once, without rounding, into
 * {@link DType#MXFP4} blocks (scale byte, then byte j = weights j and j + 16), which the kernels
 * compute on directly; the activation is the clamped SwiGLU of the config. {@link CheckpointExperts}
 * reads this layout through here, so the in-process engine, expert workers and a frontend's
 * failover all hold the same experts.
 */
final class Mxfp4Experts {
    private Mxfp4Experts() {}

    /** Refuses, at load, a config whose expert widths are not whole MXFP4 blocks. */
    static void requireBlockShapes(ModelConfig cfg) {
        if (cfg.hidden() % 32 != 0 || cfg.moeIntermediate() % 32 != 0) {
            throw new CheckpointException("config.json: MXFP4 experts need hidden_size (" + cfg.hidden() + ") and intermediate_size ("
                    + cfg.moeIntermediate() + ") in whole blocks of 32");
        }
    }

    /**
     * The checkpoint tensors that hold the experts of a layer ({@code prefix} ends in
     * ".experts."): blocks and scales (raw bytes, checked when repacked) and the biases.
     */
    static List<String> tensorNames(String prefix) {
        return List.of(prefix + "gate_up_proj_blocks", prefix + "gate_up_proj_scales", prefix + "gate_up_proj_bias",
                prefix + "down_proj_blocks", prefix + "down_proj_scales", prefix + "down_proj_bias");
    }

    /** Expert {@code e} of the layer whose experts are under {@code p} (ending in ".experts."), repacked. */
    static ExpertWeights resolve(ModelConfig cfg, Checkpoint ckpt, String p, int e) {
        int h = cfg.hidden();
        int inter = cfg.moeIntermediate();
        int n = cfg.numExperts();
        MemorySegment guBlocks = ckpt.raw(p + "gate_up_proj_blocks", "U8", n, 2L * inter, h / 32, 16);
        MemorySegment guScales = ckpt.raw(p + "gate_up_proj_scales", "U8", n, 2L * inter, h / 32);
        MemorySegment dBlocks = ckpt.raw(p + "down_proj_blocks", "U8", n, h, inter / 32, 16);
        MemorySegment dScales = ckpt.raw(p + "down_proj_scales", "U8", n, h, inter / 32);
        float[] guBias = ckpt.tensor(p + "gate_up_proj_bias", n, 2L * inter).select(e).toFloatArray();
        float[] dBias = ckpt.tensor(p + "down_proj_bias", n, h).select(e).toFloatArray();
        long guRow0 = (long) e * 2 * inter;
        Tensor gate = repack(p + "gate_proj[" + e + "]", guBlocks, guScales, guRow0, 2, inter, h);
        Tensor up = repack(p + "up_proj[" + e + "]", guBlocks, guScales, guRow0 + 1, 2, inter, h);
        Tensor down = repack(p + "down_proj[" + e + "]", dBlocks, dScales, (long) e * h, 1, h, inter);
        float[] gBias = new float[inter];
        float[] uBias = new float[inter];
        for (int i = 0; i < inter; i++) {
            gBias[i] = guBias[2 * i];
            uBias[i] = guBias[2 * i + 1];
        }
        GatedActivation act = cfg.ffn().activation();
        return new ExpertWeights(gate, up, down, gBias, uBias, dBias, act);
    }

    /** Rows first, first + step, ... ({@code rows} of them, {@code cols} weights each) as one MXFP4 tensor. */
    private static Tensor repack(String name, MemorySegment blocks, MemorySegment scales, long first, int step, int rows, int cols) {
        int perRow = cols / 32;
        MemorySegment out = Arena.ofAuto().allocate((long) rows * perRow * DType.MXFP4.blockBytes());
        for (int r = 0; r < rows; r++) {
            long src = first + (long) r * step;
            for (int b = 0; b < perRow; b++) {
                long blk = src * perRow + b;
                long dst = ((long) r * perRow + b) * DType.MXFP4.blockBytes();
                byte scale = scales.get(ValueLayout.JAVA_BYTE, blk);
                if (scale == (byte) 0xFF) {
                    throw new CheckpointException(name + ": row " + r + " block " + b + " has the NaN scale 0xFF");
                }
                out.set(ValueLayout.JAVA_BYTE, dst + Quantizer.M_E, scale);
                for (int j = 0; j < 16; j++) {
                    int lo = code(blocks, blk * 16, j);
                    int hi = code(blocks, blk * 16, j + 16);
                    out.set(ValueLayout.JAVA_BYTE, dst + Quantizer.M_QS + j, (byte) (lo | hi << 4));
                }
            }
        }
        return new Tensor(name, out, DType.MXFP4, new long[] {rows, cols});
    }

    /** The 4-bit code of weight k of the OpenAI block at byte {@code off}: byte k/2, low nibble for even k. */
    private static int code(MemorySegment blocks, long off, int k) {
        int b = blocks.get(ValueLayout.JAVA_BYTE, off + k / 2);
        return (k & 1) == 0 ? b & 15 : (b >> 4) & 15;
    }
}
