package io.epserve.rpc;

import io.epserve.format.gguf.GgufModel;
import io.epserve.moe.ExpertSource;
import io.epserve.tensor.DType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * The one model a worker serves, from its own command line ({@code --model DIR [--expert-dtype T]
 * [--cache-dir D]}), never from the network: an Assign only names experts of it.
 *
 * @param dir         the model directory (config.json + *.safetensors), or a GGUF model
 * @param expertDType the dtype to hold the routed experts in, or null for as stored; other dtypes
 *                    come from the model's converted-experts cache, built on first use
 * @param cacheDir    where that cache goes when the model directory is not writable, or null for
 *                    the default ($EPSERVE_CACHE, else ~/.cache/epserve)
 */
public record WorkerModel(Path dir, DType expertDType, Path cacheDir) {
    public WorkerModel {
        Objects.requireNonNull(dir, "dir");
        dir = dir.toAbsolutePath().normalize();
        if (!Files.isDirectory(dir) && !GgufModel.isGguf(dir)) {
            throw new IllegalArgumentException("--model " + dir + ": no such directory or .gguf file");
        }
        if (cacheDir != null) {
            cacheDir = cacheDir.toAbsolutePath().normalize();
        }
    }

    /** The model as stored. */
    public static WorkerModel of(Path dir) {
        return new WorkerModel(dir, null, null);
    }

    public WorkerModel withExpertDType(DType t) {
        return new WorkerModel(dir, t, cacheDir);
    }

    public ModelFingerprint fingerprint() {
        return ModelFingerprint.of(dir, expertDType);
    }

    /** Opens this model's routed experts with {@code opener} (the code that knows how models are stored). */
    ExpertSource open(ExpertSource.Opener opener) {
        return opener.open(dir, expertDType, cacheDir);
    }
}
