package io.epserve.engine;

import io.epserve.format.Progress;
import io.epserve.model.LoadedModel;
import io.epserve.model.demo.DemoModel;
import java.nio.file.Path;

/** The tiny demo model (2 layers, 8 experts top-2, vocab 512), written once under target/. */
public final class TinyModel {
    private TinyModel() {}

    public static synchronized Path dir() {
        return DemoModel.ensure(DemoModel.TINY, Path.of("target", "demo-cache").toAbsolutePath(), Progress.NONE);
    }

    public static LoadedModel load() {
        return LoadedModel.load(dir(), LoadedModel.Options.defaults());
    }
}
