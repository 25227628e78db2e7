package io.epserve.model.quant;

import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsFile;
import io.epserve.model.ModelConfig;
import io.epserve.tensor.DType;
import java.nio.file.Path;

/** A second process for {@link QuantizedExpertsTest#concurrentProcessesBuildOnce}: opens the cache, says whether it built it. */
public final class CacheProcessMain {
    private CacheProcessMain() {}

    public static void main(String[] args) {
        Path dir = Path.of(args[0]);
        ModelConfig cfg;
        try (Checkpoint c = Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR)) {
            cfg = ModelConfig.from(c.config());
        }
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.parse(args[1]), QuantizedExperts.CacheOptions.defaults()
                .withFallbackDir(dir.resolve("fallback")))) {
            q.expert(0, 0);
            System.out.println("built=" + q.built() + " " + q.path());
        }
    }
}
