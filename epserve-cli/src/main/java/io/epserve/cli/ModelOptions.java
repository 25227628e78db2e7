package io.epserve.cli;

import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.demo.DemoModel;
import java.nio.file.Files;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Options every model-running command shares. */
final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR",
            description = "Hugging Face model directory (config.json + *.safetensors + tokenizer.json). "
                    + "Default: the built-in demo model (random weights, its text is noise), written to the cache on first use.")
    Path model;

    @Option(names = "--router", paramLabel = "KIND", defaultValue = "learned",
            description = "Router of the sparse layers: learned (the checkpoint's gate, default) or hash "
                    + "(expert = hash(token id) mod E with a fixed seed, an experiment: a model trained with a learned router produces worse text).")
    String router;

    @Option(names = "--no-validate", description = "Skip the scan of all weights for NaN/Inf at load.")
    boolean noValidate;

    @Option(names = "--demo", hidden = true, defaultValue = "standard", description = "Demo model size: standard or tiny (tests).")
    String demo;

    Path resolveModelDir(TerminalProgress progress) {
        if (model != null) {
            if (!Files.isDirectory(model)) {
                throw new Main.UsageError("--model " + model + ": no such directory");
            }
            return model;
        }
        DemoModel.Spec spec = switch (demo) {
            case "standard" -> DemoModel.STANDARD;
            case "tiny" -> DemoModel.TINY;
            default -> throw new Main.UsageError("--demo must be standard or tiny, not '" + demo + "'");
        };
        return DemoModel.ensure(spec, DemoModel.defaultCacheDir(), progress);
    }

    MoeTransformer.RouterChoice routerChoice() {
        return switch (router) {
            case "learned" -> MoeTransformer.RouterChoice.LEARNED;
            case "hash" -> MoeTransformer.RouterChoice.HASH;
            default -> throw new Main.UsageError("--router must be learned or hash, not '" + router + "'");
        };
    }

    LoadedModel load(Path dir, TerminalProgress progress) {
        return LoadedModel.load(dir, LoadedModel.Options.defaults().withRouter(routerChoice()).withValidate(!noValidate)
                .withProgress(progress));
    }
}
