package io.epserve.format;


import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.format.gguf.GgufModel;
import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.stream.Stream;

/**
 * A Hugging Face model directory: {@code config.json} plus {@code model.safetensors}, or shards
 * listed by {@code model.safetensors.index.json}, or (without an index) every
 * {@code *.safetensors} file in the folder. Shards are mapped when first needed, so a process
 * that reads only some tensors (an expert worker) maps only the files that hold them.
 *
 * <p>Or a GGUF model (a .gguf file, its split parts, or a folder holding one): then the tensors
 * have the Hugging Face names and the config is the one its metadata gives ({@link GgufModel}).
 */
public final class Checkpoint implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path dir;
    private final JsonNode config;
    /** tensor name -> shard file name. */
    private final Map<String, String> weightMap;
    private final Map<String, SafetensorsFile> opened = new LinkedHashMap<>();
    private final SafetensorsFile.Mapping mapping;
    /** The GGUF model behind this checkpoint, or null for safetensors. */
    private final GgufModel gguf;

    private Checkpoint(Path dir, JsonNode config, Map<String, String> weightMap, SafetensorsFile.Mapping mapping) {
        this(dir, config, weightMap, mapping, null);
    }

    private Checkpoint(Path dir, JsonNode config, Map<String, String> weightMap, SafetensorsFile.Mapping mapping, GgufModel gguf) {
        this.dir = dir;
        this.config = config;
        this.weightMap = weightMap;
        this.mapping = mapping;
        this.gguf = gguf;
    }

    public static Checkpoint open(Path dir) {
        return open(dir, SafetensorsFile.Mapping.WHOLE_FILE);
    }

    /**
     * Opens a model directory; {@code PER_TENSOR} maps only the tensors asked for (expert workers).
     * A GGUF model ({@link GgufModel#isGguf}) is mapped whole: its tensors are read in place.
     */
    public static Checkpoint open(Path dir, SafetensorsFile.Mapping mapping) {
        if (GgufModel.isGguf(dir)) {
            GgufModel g = GgufModel.open(dir);
            return new Checkpoint(g.dir(), g.config(), Map.of(), mapping, g);
        }
        if (!Files.isDirectory(dir)) {
            throw new CheckpointException(dir + ": model directory not found");
        }
        JsonNode config = readJson(dir.resolve("config.json"));
        Map<String, String> weightMap = new LinkedHashMap<>();
        Path index = dir.resolve("model.safetensors.index.json");
        if (Files.exists(index)) {
            JsonNode wm = readJson(index).get("weight_map");
            if (wm == null || !wm.isObject()) {
                throw new CheckpointException("model.safetensors.index.json: no weight_map object");
            }
            for (Iterator<Map.Entry<String, JsonNode>> it = wm.fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                weightMap.put(e.getKey(), e.getValue().asText());
            }
            for (String shard : new TreeSet<>(weightMap.values())) {
                if (!Files.exists(dir.resolve(shard))) {
                    throw new CheckpointException(shard + ": file not found (listed in model.safetensors.index.json)");
                }
            }
        } else {
            List<String> files;
            try (Stream<Path> s = Files.list(dir)) {
                files = s.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".safetensors")).sorted().toList();
            } catch (IOException e) {
                throw new CheckpointException(dir + ": cannot list: " + e.getMessage(), e);
            }
            if (files.isEmpty()) {
                throw new CheckpointException(dir.resolve("model.safetensors") + ": file not found (no *.safetensors in the model directory)");
            }
            Checkpoint probe = new Checkpoint(dir, config, weightMap, mapping);
            for (String f : files) {
                for (String name : probe.file(f).entries().keySet()) {
                    String prev = weightMap.putIfAbsent(name, f);
                    if (prev != null) {
                        probe.close();
                        throw new CheckpointException(f + ": tensor '" + name + "' also in " + prev);
                    }
                }
            }
            return probe;
        }
        return new Checkpoint(dir, config, weightMap, mapping);
    }

    /**
     * The config of the model at {@code model}: its config.json, or for a GGUF model the values
     * its metadata gives (without mapping more than the header).
     */
    public static JsonNode readConfig(Path model) {
        if (GgufModel.isGguf(model)) {
            try (GgufModel g = GgufModel.open(model)) {
                return g.config();
            }
        }
        return readJson(model.resolve("config.json"));
    }

    /** Parses a JSON file of the model directory, with errors that name it. */
    public static JsonNode readJson(Path file) {
        try {
            JsonNode n = JSON.readTree(Files.readString(file));
            if (n == null || !n.isObject()) {
                throw new CheckpointException(file.getFileName() + ": not a JSON object");
            }
            return n;
        } catch (NoSuchFileException e) {
            throw new CheckpointException(file.getFileName() + ": file not found (" + file + ")");
        } catch (JsonProcessingException e) {
            throw new CheckpointException(file.getFileName() + ": malformed JSON: " + e.getOriginalMessage()
                    + " at line " + e.getLocation().getLineNr());
        } catch (IOException e) {
            throw new CheckpointException(file.getFileName() + ": cannot read: " + e.getMessage(), e);
        }
    }

    public Path dir() {
        return dir;
    }

    /** The parsed config.json. */
    public JsonNode config() {
        return config;
    }

    /** The GGUF model behind this checkpoint, when it is one. */
    public Optional<GgufModel> gguf() {
        return Optional.ofNullable(gguf);
    }

    public boolean has(String name) {
        return gguf != null ? gguf.has(name) : weightMap.containsKey(name);
    }

    /** All tensor names, in index order. */
    public List<String> names() {
        if (gguf != null) {
            return gguf.names();
        }
        return Collections.unmodifiableList(new ArrayList<>(weightMap.keySet()));
    }

    /** The shard file name holding a tensor. */
    public String fileOf(String name) {
        if (gguf != null) {
            return gguf.fileOf(name);
        }
        String f = weightMap.get(name);
        if (f == null) {
            throw new CheckpointException(describeFiles() + ": missing tensor '" + name + "'");
        }
        return f;
    }

    public SafetensorsFile.Entry entry(String name) {
        if (gguf != null) {
            DType dt = gguf.dtype(name);
            long[] shape = gguf.shape(name);
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return new SafetensorsFile.Entry(name, dt.safetensorsName(), shape, 0, dt.bytesFor(n));
        }
        String f = fileOf(name);
        SafetensorsFile.Entry e = file(f).entries().get(name);
        if (e == null) {
            throw new CheckpointException(f + ": missing tensor '" + name + "' (listed in model.safetensors.index.json)");
        }
        return e;
    }

    public Tensor tensor(String name) {
        if (gguf != null) {
            return gguf.tensor(name);
        }
        return file(fileOf(name)).tensor(name);
    }

    /** The tensor, refused unless its shape is exactly {@code expected}. */
    public Tensor tensor(String name, long... expected) {
        Tensor t = tensor(name);
        if (!t.hasShape(expected)) {
            String where = gguf != null ? gguf.describe(name) + ", read as '" + name + "'," : fileOf(name) + ": tensor '" + name + "'";
            throw new CheckpointException(where + " has shape " + Arrays.toString(t.shape())
                    + ", expected " + Arrays.toString(expected));
        }
        return t;
    }

    /** The bytes of a tensor stored as {@code dtypeName} with exactly the shape {@code expected} (any dtype; see {@link SafetensorsFile#raw}). */
    public MemorySegment raw(String name, String dtypeName, long... expected) {
        SafetensorsFile.Entry e = entry(name);
        if (!Arrays.equals(e.shape(), expected)) {
            throw new CheckpointException(fileOf(name) + ": tensor '" + name + "' has shape " + Arrays.toString(e.shape())
                    + ", expected " + Arrays.toString(expected));
        }
        return file(fileOf(name)).raw(name, dtypeName);
    }

    /** Opens (maps) a shard on first use. */
    public synchronized SafetensorsFile file(String fileName) {
        if (gguf != null) {
            throw new CheckpointException(fileName + ": a GGUF file, not safetensors");
        }
        return opened.computeIfAbsent(fileName, f -> SafetensorsFile.open(dir.resolve(f), mapping));
    }

    /** Bytes of checkpoint data mapped by this process so far. */
    public synchronized long mappedBytes() {
        if (gguf != null) {
            return gguf.mappedBytes();
        }
        return opened.values().stream().mapToLong(SafetensorsFile::mappedBytes).sum();
    }

    /** The shard files holding tensors that match the filter. */
    public List<String> filesFor(Predicate<String> tensorFilter) {
        if (gguf != null) {
            return gguf.names().stream().filter(tensorFilter).map(gguf::fileOf).distinct().sorted().toList();
        }
        return weightMap.entrySet().stream().filter(e -> tensorFilter.test(e.getKey())).map(Map.Entry::getValue)
                .distinct().sorted().toList();
    }

    private String describeFiles() {
        TreeSet<String> files = new TreeSet<>(weightMap.values());
        return files.size() == 1 ? files.first() : dir.getFileName() + "/*.safetensors";
    }

    @Override
    public synchronized void close() {
        if (gguf != null) {
            gguf.close();
        }
        for (SafetensorsFile f : opened.values()) {
            f.close();
        }
        opened.clear();
    }
}
