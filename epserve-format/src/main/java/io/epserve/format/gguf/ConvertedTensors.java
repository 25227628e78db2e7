package io.epserve.format.gguf;

import io.epserve.format.CacheFile;
import io.epserve.format.CheckpointException;
import io.epserve.format.SafetensorsFile;
import io.epserve.format.SafetensorsWriter;
import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * The tensors of a GGUF model that epserve has no kernel for (Q5_K, Q6_K), converted once into a
 * safetensors file that every process then maps read-only, so frontends and workers on one host
 * neither convert again nor hold private copies:
 * <pre>
 *   &lt;GGUF folder&gt;/.epserve-cache/&lt;file&gt;-&lt;key&gt;-converted.safetensors     (folder writable)
 *   $EPSERVE_CACHE/gguf-converted/&lt;file&gt;-&lt;key&gt;-converted.safetensors   (otherwise; default ~/.cache/epserve)
 *
 *   key     = first 16 hex digits of {@link io.epserve.format.SourceKey} of the GGUF model
 *   tensors = the Hugging Face names the model gives them (one per expert of a stacked tensor),
 *             in the dtype and shape {@link GgufModel#tensor} gives
 *   __metadata__: epserve.cache = gguf-converted, epserve.version, epserve.source_sha256 (the full key)
 * </pre>
 * A file whose metadata or tensor list does not match is rebuilt (a changed GGUF file has
 * another key, so another name).
 */
final class ConvertedTensors implements AutoCloseable {
    /** Bumped when the conversion changes; old files are rebuilt. */
    static final int VERSION = 1;

    /** One tensor of the file. */
    record Spec(String hfName, DType dtype, long[] shape) {}

    /** Writes the converted bytes of an HF tensor into {@code out}. */
    @FunctionalInterface
    interface Converter {
        void convert(String hfName, MemorySegment out);
    }

    private final SafetensorsFile file;
    private final boolean built;

    private ConvertedTensors(SafetensorsFile file, boolean built) {
        this.file = file;
        this.built = built;
    }

    /**
     * Maps the file of {@code specs} for the model keyed {@code key}, converting them into it first
     * when it is missing or stale; null when neither {@code preferredDir} nor {@code fallbackDir}
     * can be written (the caller converts in memory then).
     */
    static ConvertedTensors open(Path preferredDir, Path fallbackDir, String stem, String key, List<Spec> specs, Converter converter) {
        String name = stem + "-" + key.substring(0, 16) + "-converted.safetensors";
        try {
            CacheFile.Opened<ConvertedTensors> o = CacheFile.openOrBuild(preferredDir, fallbackDir, name,
                    f -> tryOpen(f, key, specs), f -> build(f, key, specs, converter));
            return o == null ? null : o.built() ? new ConvertedTensors(o.value().file, true) : o.value();
        } catch (IOException e) {
            throw new CheckpointException(preferredDir.resolve(name) + ": cannot write the converted tensors: " + e.getMessage(), e);
        }
    }

    private static ConvertedTensors tryOpen(Path path, String key, List<Spec> specs) {
        SafetensorsFile f;
        try {
            f = SafetensorsFile.open(path, SafetensorsFile.Mapping.WHOLE_FILE);
        } catch (CheckpointException e) {
            return null;
        }
        Map<String, String> m = f.metadata();
        boolean ok = "gguf-converted".equals(m.get("epserve.cache")) && String.valueOf(VERSION).equals(m.get("epserve.version"))
                && key.equals(m.get("epserve.source_sha256")) && f.entries().size() == specs.size();
        for (Spec s : specs) {
            SafetensorsFile.Entry e = f.entries().get(s.hfName());
            ok &= e != null && e.dtype() == s.dtype() && Arrays.equals(e.shape(), s.shape());
        }
        if (!ok) {
            f.close();
            return null;
        }
        return new ConvertedTensors(f, false);
    }

    private static void build(Path target, String key, List<Spec> specs, Converter converter) throws IOException {
        List<SafetensorsWriter.Spec> out = specs.stream().map(s -> new SafetensorsWriter.Spec(s.hfName(), s.dtype(), s.shape())).toList();
        SafetensorsWriter.write(target, Map.of("epserve.cache", "gguf-converted", "epserve.version", String.valueOf(VERSION),
                "epserve.source_sha256", key), out, (i, spec, bytes) -> converter.convert(spec.name(), bytes));
    }

    Tensor tensor(String hfName) {
        return file.tensor(hfName);
    }

    /** Whether this process wrote the file (false: it mapped one that was there). */
    boolean built() {
        return built;
    }

    Path path() {
        return file.path();
    }

    @Override
    public void close() {
        file.close();
    }
}
