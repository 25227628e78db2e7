package io.epserve.model.quant;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsFile;
import io.epserve.format.SafetensorsWriter;
import io.epserve.format.Validation;
import io.epserve.model.CheckpointExperts;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertStore;
import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.DType;
import io.epserve.tensor.Numerics;
import io.epserve.tensor.Quantizer;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The routed experts of a checkpoint in another dtype (GGUF block quantization Q8_0 / Q4_0 /
 * Q4_K, or a plain float type), computed once and kept in a cache file that every process maps
 * read-only, so frontends, workers and model instances on one host share its pages
 * Attention, dense layers, shared experts and routers stay as stored.
 *
 * <h2>The cache file</h2>
 * <pre>
 *   &lt;model dir&gt;/.epserve-cache/experts-&lt;key&gt;-&lt;dtype&gt;.safetensors      (model dir writable)
 *   $EPSERVE_CACHE/quantized-experts/experts-&lt;key&gt;-&lt;dtype&gt;.safetensors  (otherwise; default ~/.cache/epserve)
 *
 *   key     = first 16 hex digits of {@link SourceKey} (config.json, shard headers, sizes, samples)
 *   tensors = model.layers.L.mlp.experts.E.{gate_proj,up_proj,down_proj}.weight, for every sparse
 *             layer L and expert E, dtype "Q8_0" | "Q4_0" | "Q4_K" | "BF16" | ..., the expert's shape
 *   __metadata__: epserve.cache = routed-experts, epserve.version, epserve.dtype,
 *                 epserve.source_sha256 (the full key), epserve.layers, epserve.experts
 * </pre>
 * An existing file is used when its metadata and every tensor's name, dtype and shape match;
 * otherwise it is rebuilt. Building happens under an exclusive lock on {@code <file>.lock} (a
 * file lock between processes, a {@link ReentrantLock} within this JVM): the first process
 * quantizes, the others wait and then map its result. The file is written under a temporary
 * name and renamed into place ({@link SafetensorsWriter}), so a reader never sees a partial
 * file, and a process that already mapped an older file keeps its pages.
 *
 * <p>Shapes a format cannot store (rows not a whole number of blocks, e.g. Q4_K's 256 on a
 * hidden size of 128) are refused before anything is written, naming the tensor.
 */
public final class QuantizedExperts implements ExpertStore, AutoCloseable {

    /** Bumped when the file layout changes; old files are rebuilt. */
    public static final int VERSION = 1;
    static final String CACHE_DIR = ".epserve-cache";

    /**
     * Where the cache may live when the model directory is not writable, how to report the
     * build, and how to map the result (a worker maps per tensor: only its experts).
     */
    public record CacheOptions(Path fallbackDir, Progress progress, SafetensorsFile.Mapping mapping) {
        public static CacheOptions defaults() {
            return new CacheOptions(defaultFallbackDir(), Progress.NONE, SafetensorsFile.Mapping.WHOLE_FILE);
        }

        public CacheOptions withProgress(Progress p) {
            return new CacheOptions(fallbackDir, p, mapping);
        }

        public CacheOptions withMapping(SafetensorsFile.Mapping m) {
            return new CacheOptions(fallbackDir, progress, m);
        }

        public CacheOptions withFallbackDir(Path d) {
            return new CacheOptions(d, progress, mapping);
        }
    }

    /** $EPSERVE_CACHE (else $XDG_CACHE_HOME/epserve, else ~/.cache/epserve) / quantized-experts. */
    public static Path defaultFallbackDir() {
        return DemoModel.defaultCacheDir().resolve("quantized-experts");
    }

    private static final Map<Path, ReentrantLock> JVM_LOCKS = new ConcurrentHashMap<>();

    private final ModelConfig cfg;
    private final DType dtype;
    private final SafetensorsFile file;
    private final boolean built;
    private final ExpertWeights[][] experts;

    private QuantizedExperts(ModelConfig cfg, DType dtype, SafetensorsFile file, boolean built) {
        this.cfg = cfg;
        this.dtype = dtype;
        this.file = file;
        this.built = built;
        this.experts = new ExpertWeights[cfg.layers()][];
        for (int l = 0; l < cfg.layers(); l++) {
            if (cfg.isSparse(l)) {
                experts[l] = new ExpertWeights[cfg.numExperts()];
            }
        }
    }

    /** Name of expert e's tensor {@code proj} (gate_proj, up_proj, down_proj) of layer l in the cache. */
    public static String tensorName(int layer, int expert, String proj) {
        return "model.layers." + layer + ".mlp.experts." + expert + "." + proj + ".weight";
    }

    /**
     * The routed experts of the checkpoint in {@code modelDir} as {@code dtype}: maps the cache
     * file, building it first if it is missing or stale.
     */
    public static QuantizedExperts open(Path modelDir, ModelConfig cfg, DType dtype, CacheOptions o) {
        String key;
        try (Checkpoint header = Checkpoint.open(modelDir, SafetensorsFile.Mapping.PER_TENSOR)) {
            requireStorable(cfg, new CheckpointExperts(cfg, header), dtype);
            key = SourceKey.of(header);
        }
        String name = "experts-" + key.substring(0, 16) + "-" + dtype.label() + ".safetensors";
        // a GGUF file's cache goes beside it
        Path preferred = (Files.isDirectory(modelDir) ? modelDir : modelDir.toAbsolutePath().getParent()).resolve(CACHE_DIR).resolve(name);
        Path fallback = o.fallbackDir().resolve(name);
        for (Path existing : List.of(preferred, fallback)) {
            QuantizedExperts q = tryOpen(existing, cfg, dtype, key, o.mapping());
            if (q != null) {
                return q;
            }
        }
        Path target = writableDir(preferred.getParent()) ? preferred : fallback;
        if (target == fallback && !writableDir(fallback.getParent())) {
            throw new CheckpointException(modelDir + ": cannot write the " + dtype + " expert cache: neither "
                    + preferred.getParent() + " nor " + fallback.getParent() + " is writable (set EPSERVE_CACHE)");
        }
        ReentrantLock jvmLock = JVM_LOCKS.computeIfAbsent(target.toAbsolutePath().normalize(), p -> new ReentrantLock());
        jvmLock.lock();
        try (FileChannel lockFile = FileChannel.open(target.resolveSibling(name + ".lock"),
                StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             FileLock ignored = lockFile.lock()) {
            // Another process may have built it while we waited for the lock.
            QuantizedExperts q = tryOpen(target, cfg, dtype, key, o.mapping());
            if (q != null) {
                return q;
            }
            build(modelDir, cfg, dtype, key, target, o.progress());
            q = tryOpen(target, cfg, dtype, key, o.mapping());
            if (q == null) {
                throw new CheckpointException(target + ": the expert cache just written does not read back");
            }
            return new QuantizedExperts(cfg, dtype, q.file, true);
        } catch (IOException e) {
            throw new CheckpointException(target + ": cannot write the expert cache: " + e.getMessage(), e);
        } finally {
            jvmLock.unlock();
        }
    }

    /** Creates {@code dir} if needed; false if it cannot be written (read-only model directory, permissions). */
    static boolean writableDir(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (FileSystemException e) {
            return false;
        } catch (IOException e) {
            return false;
        }
        return Files.isDirectory(dir) && Files.isWritable(dir);
    }

    /** Refuses, before any work, an expert shape the dtype cannot store, naming the checkpoint tensor. */
    static void requireStorable(ModelConfig cfg, CheckpointExperts src, DType dtype) {
        for (int l = 0; l < cfg.layers(); l++) {
            if (cfg.isSparse(l)) {
                ExpertWeights w = src.expert(l, 0);
                for (Tensor t : List.of(w.gate(), w.down())) {
                    if (t.cols() % dtype.blockSize() != 0) {
                        throw new CheckpointException("cannot hold the routed experts as " + dtype + ": tensor '" + t.name() + "' "
                                + Arrays.toString(t.shape()) + " has rows of " + t.cols() + " weights, and " + dtype
                                + " stores rows in blocks of " + dtype.blockSize() + " (" + t.cols() + " is not a multiple of "
                                + dtype.blockSize() + ")");
                    }
                }
                return; // every sparse layer has the same expert shapes
            }
        }
    }

    /** Maps and checks an existing cache file; null if absent, unreadable or stale. */
    private static QuantizedExperts tryOpen(Path path, ModelConfig cfg, DType dtype, String key, SafetensorsFile.Mapping mapping) {
        if (!Files.isRegularFile(path)) {
            return null;
        }
        SafetensorsFile f;
        try {
            f = SafetensorsFile.open(path, mapping);
        } catch (CheckpointException e) {
            return null;
        }
        Map<String, String> m = f.metadata();
        boolean ok = "routed-experts".equals(m.get("epserve.cache")) && String.valueOf(VERSION).equals(m.get("epserve.version"))
                && dtype.safetensorsName().equals(m.get("epserve.dtype")) && key.equals(m.get("epserve.source_sha256"));
        if (ok) {
            int h = cfg.hidden();
            int inter = cfg.moeIntermediate();
            check:
            for (int l = 0; l < cfg.layers(); l++) {
                if (!cfg.isSparse(l)) {
                    continue;
                }
                for (int e = 0; e < cfg.numExperts(); e++) {
                    for (String p : List.of("gate_proj", "up_proj", "down_proj")) {
                        SafetensorsFile.Entry en = f.entries().get(tensorName(l, e, p));
                        long[] want = p.equals("down_proj") ? new long[] {h, inter} : new long[] {inter, h};
                        if (en == null || en.dtype() != dtype || !Arrays.equals(en.shape(), want)) {
                            ok = false;
                            break check;
                        }
                    }
                }
            }
        }
        if (!ok) {
            f.close();
            return null;
        }
        return new QuantizedExperts(cfg, dtype, f, false);
    }

    /** Reads every routed expert of the checkpoint, converts it, writes the cache file (temp + rename). */
    private static void build(Path modelDir, ModelConfig cfg, DType dtype, String key, Path target, Progress progress) throws IOException {
        try (Checkpoint ckpt = Checkpoint.open(modelDir, SafetensorsFile.Mapping.PER_TENSOR)) {
            CheckpointExperts src = new CheckpointExperts(cfg, ckpt);
            List<SafetensorsWriter.Spec> specs = new ArrayList<>();
            List<Tensor> sources = new ArrayList<>();
            StringBuilder layers = new StringBuilder();
            for (int l = 0; l < cfg.layers(); l++) {
                if (!cfg.isSparse(l)) {
                    continue;
                }
                layers.append(layers.isEmpty() ? "" : ",").append(l);
                for (int e = 0; e < cfg.numExperts(); e++) {
                    ExpertWeights w = src.expert(l, e);
                    String[] names = {"gate_proj", "up_proj", "down_proj"};
                    Tensor[] ts = {w.gate(), w.up(), w.down()};
                    for (int i = 0; i < 3; i++) {
                        specs.add(new SafetensorsWriter.Spec(tensorName(l, e, names[i]), dtype, ts[i].shape()));
                        sources.add(ts[i]);
                    }
                }
            }
            long total = sources.stream().mapToLong(t -> t.data().byteSize()).sum();
            progress.start("converting routed experts to " + dtype + " (once; cached in " + target.getParent() + ")", total);
            try {
                SafetensorsWriter.write(target, Map.of(
                        "epserve.cache", "routed-experts",
                        "epserve.version", String.valueOf(VERSION),
                        "epserve.dtype", dtype.safetensorsName(),
                        "epserve.source_sha256", key,
                        "epserve.layers", layers.toString(),
                        "epserve.experts", String.valueOf(cfg.numExperts())), specs, (i, spec, out) -> {
                    Tensor s = sources.get(i);
                    long bad = Validation.firstNonFinite(s, Progress.NONE);
                    if (bad >= 0) {
                        throw new CheckpointException("tensor '" + s.name() + "' has a non-finite value (" + s.getFloat(bad)
                                + ") at element " + bad);
                    }
                    convert(s, dtype, out);
                    progress.advance(s.data().byteSize());
                });
            } finally {
                progress.done();
            }
        }
    }

    /** {@code src} in {@code dtype} into {@code out}: block quantization, or rounding to a plain float type. */
    static void convert(Tensor src, DType dtype, MemorySegment out) {
        if (dtype.quantized()) {
            Quantizer.quantize(src, dtype, out);
            return;
        }
        ValueLayout.OfFloat f32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        ValueLayout.OfShort i16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        long n = src.size();
        for (long i = 0; i < n; i++) {
            float v = src.getFloat(i);
            switch (dtype) {
                case F32 -> out.set(f32, i * 4, v);
                case BF16 -> out.set(i16, i * 2, Numerics.floatToBf16(v));
                case F16 -> out.set(i16, i * 2, Numerics.floatToF16(v));
                default -> throw new IllegalStateException(dtype.toString());
            }
        }
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
                    w = new ExpertWeights(file.tensor(tensorName(layer, e, "gate_proj")), file.tensor(tensorName(layer, e, "up_proj")),
                            file.tensor(tensorName(layer, e, "down_proj")));
                    experts[layer][e] = w;
                }
            }
        }
        return w;
    }

    /** Scans every expert's block scales for NaN/Inf (cheap: a few bytes per block). */
    public void requireFinite(Progress progress) {
        long total = file.entries().values().stream().mapToLong(en -> en.end() - en.begin()).sum();
        progress.start("validating " + file.path().getFileName(), total);
        try {
            for (String n : file.entries().keySet()) {
                Tensor t = file.tensor(n);
                long bad = Validation.firstNonFinite(t, progress);
                if (bad >= 0) {
                    throw new CheckpointException(file.path() + ": tensor '" + n + "' has a non-finite value at element " + bad
                            + " (delete the file to rebuild it)");
                }
            }
        } finally {
            progress.done();
        }
    }

    /** Scans one expert's three tensors (their block scales for quantized dtypes) for NaN/Inf. */
    public void requireFinite(int layer, int e) {
        expert(layer, e); // checks the ids
        for (String proj : new String[] {"gate_proj", "up_proj", "down_proj"}) {
            String n = tensorName(layer, e, proj);
            long bad = Validation.firstNonFinite(file.tensor(n), Progress.NONE);
            if (bad >= 0) {
                throw new CheckpointException(file.path() + ": tensor '" + n + "' has a non-finite value at element " + bad
                        + " (delete the file to rebuild it)");
            }
        }
    }

    /** The dtype the experts are held in. */
    public DType dtype() {
        return dtype;
    }

    /** The mapped cache file. */
    public Path path() {
        return file.path();
    }

    /** Whether this process wrote the cache file (false: it mapped one that was there). */
    public boolean built() {
        return built;
    }

    /** Bytes of all expert tensors in the cache. */
    public long bytes() {
        return file.entries().values().stream().mapToLong(en -> en.end() - en.begin()).sum();
    }

    /** Bytes of the cache mapped by this process so far (per-tensor mapping: only the experts asked for). */
    public long mappedBytes() {
        return file.mappedBytes();
    }

    @Override
    public void close() {
        file.close();
    }
}
