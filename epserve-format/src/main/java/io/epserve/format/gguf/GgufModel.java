package io.epserve.format.gguf;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.CacheFile;
import io.epserve.format.CheckpointException;
import io.epserve.format.SourceKey;
import io.epserve.tensor.DType;
import io.epserve.tensor.Quantizer;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A model stored as GGUF: one file, or the split files {@code NAME-0000i-of-0000n.gguf} of one
 * model, with its tensors under the Hugging Face names the loader reads ({@link GgufTensorNames})
 * and its metadata as a config.json ({@link GgufHfConfig}).
 *
 * <p>Tensors whose ggml type epserve computes on (F32, F16, BF16, Q8_0, Q4_0, Q4_K) are views of
 * the mapping; a stacked expert tensor gives one view per expert. The rest are made once:
 * <ul>
 *   <li>Q5_K and Q6_K matrices (epserve has no kernel for them) are decoded and re-quantized to
 *       Q8_0 (F32 when rows are not whole 32-blocks): 8.5 bits per weight hold a 5- or 6-bit
 *       K-quant's values to within half a Q8_0 step, and every kernel reads Q8_0. All of them
 *       are converted together, the first time one is asked for, into a file every later open
 *       (and every process) maps ({@link ConvertedTensors}); in memory only when no cache
 *       folder can be written;</li>
 *   <li>q and k of {@code llama} files get llama.cpp's rope permutation undone, a copy of whole
 *       rows in memory owned by this model (any type: rows are whole blocks), so RoPE pairs the
 *       dimensions as HF does.</li>
 * </ul>
 */
public final class GgufModel implements AutoCloseable {
    private static final Pattern SPLIT = Pattern.compile("(.*)-(\\d{5})-of-(\\d{5})\\.gguf");
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Where an HF tensor comes from. */
    private record Source(GgufFile file, GgufFile.TensorInfo info, GgufTensorNames.Target target) {}

    private final Path dir;
    private final List<GgufFile> files;
    private final GgufMetadata metadata;
    private final String architecture;
    private final ObjectNode config;
    private final Map<String, Source> sources;
    private final Map<String, Tensor> made = new ConcurrentHashMap<>();
    private final Arena arena = Arena.ofShared();
    /** Where converted tensors go when the GGUF's folder cannot be written. */
    private final Path fallbackDir;
    /** The converted tensors' file, once opened (null: not yet, or none could be written). */
    private ConvertedTensors converted;
    private boolean convertedOpened;
    /** Tensors this process converted (0 when they all came from the converted tensors' file). */
    private final AtomicInteger conversions = new AtomicInteger();

    private GgufModel(Path dir, List<GgufFile> files, Path fallbackDir) {
        this.dir = dir;
        this.fallbackDir = fallbackDir;
        this.files = files;
        this.metadata = files.getFirst().metadata();
        Map<String, GgufFile.TensorInfo> all = new LinkedHashMap<>();
        Map<String, GgufFile> owner = new LinkedHashMap<>();
        for (GgufFile f : files) {
            for (GgufFile.TensorInfo t : f.tensors().values()) {
                GgufFile prev = owner.putIfAbsent(t.name(), f);
                if (prev != null) {
                    throw new CheckpointException(f.path().getFileName() + ": tensor '" + t.name() + "' also in " + prev.path().getFileName());
                }
                all.put(t.name(), t);
            }
        }
        this.architecture = metadata.requireString("general.architecture");
        this.config = GgufHfConfig.from(metadata, all);
        int heads = config.get("num_attention_heads").asInt();
        int kvHeads = config.get("num_key_value_heads").asInt();
        Map<String, Source> src = new LinkedHashMap<>();
        for (GgufFile.TensorInfo t : all.values()) {
            for (GgufTensorNames.Target target : GgufTensorNames.targets(architecture, t, heads, kvHeads)) {
                src.put(target.hfName(), new Source(owner.get(t.name()), t, target));
            }
        }
        this.sources = Collections.unmodifiableMap(src);
    }

    /** Whether {@code path} is a GGUF model: a .gguf file, or a folder with .gguf files and no config.json. */
    public static boolean isGguf(Path path) {
        if (Files.isRegularFile(path)) {
            return path.getFileName().toString().endsWith(".gguf");
        }
        if (!Files.isDirectory(path) || Files.exists(path.resolve("config.json"))) {
            return false;
        }
        return !ggufFiles(path).isEmpty();
    }

    private static List<Path> ggufFiles(Path dir) {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".gguf") && Files.isRegularFile(p)).sorted().toList();
        } catch (IOException e) {
            throw new CheckpointException(dir + ": cannot list: " + e.getMessage(), e);
        }
    }

    /**
     * Opens a .gguf file (with its sibling splits when it is one), or the one GGUF model in a
     * folder; converted tensors go beside it, or else to $EPSERVE_CACHE/gguf-converted.
     */
    public static GgufModel open(Path path) {
        return open(path, CacheFile.defaultDir().resolve("gguf-converted"));
    }

    /** As {@link #open(Path)}, with converted tensors in {@code fallbackDir} when the GGUF's folder cannot be written. */
    public static GgufModel open(Path path, Path fallbackDir) {
        List<Path> parts = resolve(path);
        List<GgufFile> opened = new ArrayList<>();
        try {
            for (Path p : parts) {
                opened.add(GgufFile.open(p));
            }
            checkSplits(opened);
            Path dir = path.toAbsolutePath().getParent();
            return new GgufModel(Files.isDirectory(path) ? path : dir, List.copyOf(opened), fallbackDir);
        } catch (RuntimeException e) {
            opened.forEach(GgufFile::close);
            throw e;
        }
    }

    /** The files of one model: the file itself, all splits of its set, or the one model in a folder. */
    public static List<Path> resolve(Path path) {
        if (Files.isDirectory(path)) {
            List<Path> all = ggufFiles(path);
            if (all.isEmpty()) {
                throw new CheckpointException(path + ": no .gguf file in the folder");
            }
            List<String> models = all.stream().map(p -> {
                Matcher m = SPLIT.matcher(p.getFileName().toString());
                return m.matches() ? m.group(1) + "-*-of-" + m.group(3) + ".gguf" : p.getFileName().toString();
            }).distinct().toList();
            if (models.size() > 1) {
                throw new CheckpointException(path + ": several GGUF models in the folder (" + String.join(", ", models)
                        + "); pass the file to use as --model");
            }
            return resolve(all.getFirst());
        }
        if (!Files.isRegularFile(path)) {
            throw new CheckpointException(path.getFileName() + ": file not found (" + path + ")");
        }
        Matcher m = SPLIT.matcher(path.getFileName().toString());
        if (!m.matches()) {
            return List.of(path);
        }
        int n = Integer.parseInt(m.group(3));
        List<Path> parts = new ArrayList<>();
        for (int i = 1; i <= n; i++) {
            Path p = path.resolveSibling(String.format("%s-%05d-of-%05d.gguf", m.group(1), i, n));
            if (!Files.isRegularFile(p)) {
                throw new CheckpointException(p.getFileName() + ": split file not found (part " + i + " of " + n + " of "
                        + path.getFileName() + ")");
            }
            parts.add(p);
        }
        return parts;
    }

    /** Split files say which part they are (split.no, split.count); they must agree with their names. */
    private static void checkSplits(List<GgufFile> files) {
        for (int i = 0; i < files.size(); i++) {
            GgufMetadata md = files.get(i).metadata();
            if (md.has("split.count") && md.requireLong("split.count") != files.size()) {
                throw new CheckpointException(md.file() + ": metadata key 'split.count' is " + md.requireLong("split.count")
                        + " but there are " + files.size() + " split files");
            }
            if (md.has("split.no") && md.requireLong("split.no") != i) {
                throw new CheckpointException(md.file() + ": metadata key 'split.no' is " + md.requireLong("split.no")
                        + ", expected " + i + " for this file name");
            }
        }
    }

    /** The folder holding the file(s). */
    public Path dir() {
        return dir;
    }

    public List<Path> paths() {
        return files.stream().map(GgufFile::path).toList();
    }

    public List<GgufFile> files() {
        return files;
    }

    /** The first file's metadata (split files keep the model's keys in part 1). */
    public GgufMetadata metadata() {
        return metadata;
    }

    /** llama.cpp's architecture name (general.architecture). */
    public String architecture() {
        return architecture;
    }

    /** The model's config as Hugging Face's config.json would give it. */
    public ObjectNode config() {
        return config;
    }

    /** HF tensor names, in file order (stacked experts expanded per expert). */
    public List<String> names() {
        return List.copyOf(sources.keySet());
    }

    public boolean has(String hfName) {
        return sources.containsKey(hfName);
    }

    /** The file holding an HF tensor, and its GGUF name, for messages. */
    public String describe(String hfName) {
        Source s = source(hfName);
        return s.file().path().getFileName() + ": tensor '" + s.info().name() + "'"
                + (s.target().expert() >= 0 ? " (expert " + s.target().expert() + ")" : "");
    }

    /** The file name holding an HF tensor. */
    public String fileOf(String hfName) {
        return source(hfName).file().path().getFileName().toString();
    }

    private Source source(String hfName) {
        Source s = sources.get(hfName);
        if (s == null) {
            String hint = "";
            Matcher kvB = Pattern.compile("model\\.layers\\.(\\d+)\\.self_attn\\.kv_b_proj\\.weight").matcher(hfName);
            if (kvB.matches() && files.stream().anyMatch(f -> f.tensors().containsKey("blk." + kvB.group(1) + ".attn_k_b.weight"))) {
                hint = "; this file has only llama.cpp's split attn_k_b/attn_v_b, which epserve does not read: convert with attn_kv_b";
            }
            throw new CheckpointException(describeFiles() + ": missing tensor '" + hfName + "' (" + architecture + " GGUF" + hint + ")");
        }
        return s;
    }

    private String describeFiles() {
        return files.size() == 1 ? files.getFirst().path().getFileName().toString() : dir.getFileName() + "/*.gguf";
    }

    /** The dtype {@link #tensor} gives for an HF tensor, without making it. */
    public DType dtype(String hfName) {
        Source s = source(hfName);
        return targetDType(s);
    }

    public long[] shape(String hfName) {
        return source(hfName).target().shape().clone();
    }

    private DType targetDType(Source s) {
        GgmlType t = s.info().type();
        if (t.dtype() != null) {
            return t.dtype();
        }
        if (!t.decodable()) {
            throw new CheckpointException(describe(s.target().hfName()) + " has ggml type " + t
                    + ", which epserve does not read (it reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)");
        }
        long[] shape = s.target().shape();
        return shape.length >= 2 && shape[shape.length - 1] % DType.Q8_0.blockSize() == 0 ? DType.Q8_0 : DType.F32;
    }

    /** The HF tensor: a view of the mapping, or (see the class comment) a copy made once. */
    public Tensor tensor(String hfName) {
        Tensor t = made.get(hfName);
        if (t != null) {
            return t;
        }
        Source s = source(hfName);
        if (needsConversion(s)) {
            converted(); // outside computeIfAbsent: it may convert every such tensor first
        }
        return made.computeIfAbsent(hfName, n -> make(s));
    }

    /** Whether a tensor is read through a conversion (no kernel for its type, but epserve can decode it). */
    private static boolean needsConversion(Source s) {
        return s.info().type().dtype() == null && s.info().type().decodable();
    }

    /** The converted tensors' file, opened (and built when missing) on first need; null when no folder can hold it. */
    private synchronized ConvertedTensors converted() {
        if (!convertedOpened) {
            List<ConvertedTensors.Spec> specs = sources.values().stream().filter(GgufModel::needsConversion)
                    .map(s -> new ConvertedTensors.Spec(s.target().hfName(), targetDType(s), s.target().shape())).toList();
            String stem = files.getFirst().path().getFileName().toString().replaceFirst("\\.gguf$", "");
            converted = ConvertedTensors.open(dir.resolve(CacheFile.DIR_NAME), fallbackDir, stem, SourceKey.of(this), specs,
                    (name, out) -> convert(sources.get(name), out));
            convertedOpened = true;
        }
        return converted;
    }

    /** The number of tensors this process converted: 0 when the converted tensors' file held them all. */
    public int conversions() {
        return conversions.get();
    }

    /** The file the converted tensors are mapped from, once one was opened. */
    public synchronized Optional<Path> convertedFile() {
        return Optional.ofNullable(converted).map(ConvertedTensors::path);
    }

    private Tensor make(Source s) {
        GgufTensorNames.Target target = s.target();
        long[] shape = target.shape();
        DType dt = targetDType(s);
        Tensor t;
        if (!needsConversion(s)) {
            t = new Tensor(target.hfName(), stored(s), dt, shape);
        } else if (converted() != null) {
            t = converted().tensor(target.hfName());
        } else {
            long elements = 1;
            for (long d : shape) {
                elements *= d;
            }
            MemorySegment out = arena.allocate(dt.bytesFor(elements), 64);
            convert(s, out);
            t = new Tensor(target.hfName(), out, dt, shape);
        }
        if (target.unpermuteHeads() > 0) {
            t = unpermute(t, target.unpermuteHeads(), describe(target.hfName()));
        }
        return t;
    }

    /** The stored bytes of a target: the GGUF tensor's, or one expert's slice of a stacked one. */
    private MemorySegment stored(Source s) {
        long elements = 1;
        for (long d : s.target().shape()) {
            elements *= d;
        }
        MemorySegment bytes = s.file().data(s.info());
        if (s.target().expert() >= 0) {
            long per = s.info().type().bytesFor(elements);
            bytes = bytes.asSlice(s.target().expert() * per, per);
        }
        return bytes;
    }

    /** Decodes a tensor epserve has no kernel for, row by row, into {@code out} in its target dtype (Q8_0 or F32). */
    private void convert(Source s, MemorySegment out) {
        String where = describe(s.target().hfName());
        long[] shape = s.target().shape();
        DType dt = targetDType(s);
        MemorySegment bytes = stored(s);
        int cols = Math.toIntExact(shape[shape.length - 1]);
        long rows = 1;
        for (int i = 0; i < shape.length - 1; i++) {
            rows *= shape[i];
        }
        GgmlType type = s.info().type();
        long srcRowBytes = type.bytesFor(cols);
        float[] row = new float[cols];
        conversions.incrementAndGet();
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment f32 = tmp.allocate(4L * cols, 64);
            Tensor rowTensor = new Tensor(s.target().hfName(), f32, DType.F32, new long[] {1, cols});
            long dstRowBytes = dt.bytesFor(cols);
            for (long r = 0; r < rows; r++) {
                GgmlDequantizer.decode(type, bytes, r * srcRowBytes, row, 0, cols, where);
                if (dt == DType.F32) {
                    MemorySegment.copy(row, 0, out, F32, r * 4L * cols, cols);
                } else {
                    MemorySegment.copy(row, 0, f32, F32, 0, cols);
                    Quantizer.quantize(rowTensor, dt, out.asSlice(r * dstRowBytes, dstRowBytes));
                }
            }
        }
    }

    /**
     * Undoes convert_hf_to_gguf's q/k permutation: within each head of d rows, GGUF row 2i+j holds
     * HF row j·d/2 + i (i &lt; d/2, j ∈ {0, 1}).
     */
    private Tensor unpermute(Tensor t, int heads, String where) {
        long rows = t.dim(0);
        if (t.rank() != 2 || rows % (2L * heads) != 0) {
            throw new CheckpointException(where + ": shape " + Arrays.toString(t.shape()) + " cannot hold " + heads
                    + " heads of an even size (q/k rope layout)");
        }
        long d = rows / heads;
        long rowBytes = t.dtype().bytesFor(t.dim(1));
        MemorySegment out = arena.allocate(rows * rowBytes, 64);
        for (long h = 0; h < heads; h++) {
            for (long i = 0; i < d / 2; i++) {
                for (long j = 0; j < 2; j++) {
                    long from = h * d + 2 * i + j;
                    long to = h * d + j * (d / 2) + i;
                    MemorySegment.copy(t.data(), from * rowBytes, out, to * rowBytes, rowBytes);
                }
            }
        }
        return new Tensor(t.name(), out, t.dtype(), t.shape());
    }

    /** Bytes mapped (all files) plus bytes made in memory. */
    public long mappedBytes() {
        long n = files.stream().mapToLong(GgufFile::mappedBytes).sum();
        for (Map.Entry<String, Tensor> e : made.entrySet()) {
            Source s = sources.get(e.getKey());
            if (s.info().type().dtype() == null || s.target().unpermuteHeads() > 0) {
                n += e.getValue().data().byteSize();
            }
        }
        return n;
    }

    @Override
    public void close() {
        files.forEach(GgufFile::close);
        synchronized (this) {
            if (converted != null) {
                converted.close();
            }
        }
        arena.close();
    }
}
