package io.epserve.format;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.tensor.DType;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One {@code .safetensors} file, mapped read-only. Every tensor is a slice of the mapping, never
 * a copy, so processes mapping the same file share its pages.
 *
 * <pre>
 *  0        8                    8+N                                     end of file
 *  +--------+--------------------+---------------------------------------+
 *  | N: u64 | JSON header, N     | data: tensors at [begin, end) offsets |
 *  |  (LE)  | bytes, UTF-8       | relative to byte 8+N                  |
 *  +--------+--------------------+---------------------------------------+
 *  header = { "name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...,
 *             "__metadata__": {...} }
 * </pre>
 *
 * The header is checked whole when the file opens: offsets inside the data region, sizes that
 * agree with dtype and shape, no overlaps. A file that fails any check is refused with a message
 * naming the file and the tensor.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** Headers larger than this are not a safetensors file we should trust (the format caps at 100 MB). */
    static final long MAX_HEADER_BYTES = 100L << 20;

    private static final ObjectMapper JSON = new ObjectMapper();

    /** A header entry: its stored dtype name (kept even when we cannot compute on it), shape and byte range. */
    public record Entry(String name, String dtypeName, long[] shape, long begin, long end) {
        public DType dtype() {
            return DType.fromSafetensors(dtypeName);
        }
    }

    /** How a file is mapped. */
    public enum Mapping {
        /** One mapping of the whole file (a frontend, a single process). */
        WHOLE_FILE,
        /**
         * Only the header is read at open; each tensor's byte range is mapped when first asked for.
         * An expert worker maps its own experts and nothing else.
         */
        PER_TENSOR
    }

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final FileChannel channel;
    private final long dataStart;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;
    private final Map<String, MemorySegment> mapped = new ConcurrentHashMap<>();
    private final AtomicLong mappedBytes = new AtomicLong();

    private SafetensorsFile(Path path, Arena arena, MemorySegment data, FileChannel channel, long dataStart,
                            Map<String, Entry> entries, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.channel = channel;
        this.dataStart = dataStart;
        this.entries = entries;
        this.metadata = metadata;
        if (data != null) {
            mappedBytes.set(data.byteSize());
        }
    }

    /** Maps the whole file and validates its header. */
    public static SafetensorsFile open(Path path) {
        return open(path, Mapping.WHOLE_FILE);
    }

    /** Opens a safetensors file and validates its header; maps it as {@code mapping} says. */
    public static SafetensorsFile open(Path path, Mapping mapping) {
        String file = path.getFileName().toString();
        Arena arena = Arena.ofShared();
        FileChannel ch = null;
        try {
            ch = FileChannel.open(path, StandardOpenOption.READ);
            long size = ch.size();
            if (size < 8) {
                throw new CheckpointException(file + ": truncated safetensors file (" + size + " bytes, no header length)");
            }
            ByteBuffer lenBuf = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, lenBuf, 0);
            long headerLen = lenBuf.getLong(0);
            if (headerLen < 2 || headerLen > MAX_HEADER_BYTES) {
                throw new CheckpointException(file + ": not a safetensors file (header length " + headerLen + ")");
            }
            if (8 + headerLen > size) {
                throw new CheckpointException(file + ": truncated safetensors file (header of " + headerLen
                        + " bytes, file has " + size + ")");
            }
            ByteBuffer hbuf = ByteBuffer.allocate((int) headerLen);
            readFully(ch, hbuf, 8);
            byte[] hb = hbuf.array();
            JsonNode header;
            try {
                header = JSON.readTree(new String(hb, StandardCharsets.UTF_8));
            } catch (JsonProcessingException e) {
                throw new CheckpointException(file + ": malformed safetensors header: " + e.getOriginalMessage());
            }
            if (header == null || !header.isObject()) {
                throw new CheckpointException(file + ": malformed safetensors header: not a JSON object");
            }
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, Entry> entries = parseEntries(file, header, size - 8 - headerLen, metadata);
            MemorySegment data = null;
            if (mapping == Mapping.WHOLE_FILE) {
                data = ch.map(FileChannel.MapMode.READ_ONLY, 8 + headerLen, size - 8 - headerLen, arena);
                ch.close();
                ch = null;
            }
            return new SafetensorsFile(path, arena, data, ch, 8 + headerLen, Collections.unmodifiableMap(entries),
                    Collections.unmodifiableMap(metadata));
        } catch (NoSuchFileException e) {
            closeQuietly(arena, ch);
            throw new CheckpointException(file + ": file not found (" + path + ")");
        } catch (IOException e) {
            closeQuietly(arena, ch);
            throw new CheckpointException(file + ": cannot read: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            closeQuietly(arena, ch);
            throw e;
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos + buf.position());
            if (n < 0) {
                throw new IOException("unexpected end of file");
            }
        }
    }

    private static void closeQuietly(Arena arena, FileChannel ch) {
        arena.close();
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // already failing
            }
        }
    }

    private static Map<String, Entry> parseEntries(String file, JsonNode header, long dataSize, Map<String, String> metadata) {
        Map<String, Entry> entries = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> f = it.next();
            String name = f.getKey();
            JsonNode v = f.getValue();
            if (name.equals("__metadata__")) {
                if (v.isObject()) {
                    v.fields().forEachRemaining(m -> metadata.put(m.getKey(), m.getValue().asText()));
                }
                continue;
            }
            String where = file + ": tensor '" + name + "'";
            JsonNode dt = v.get("dtype");
            JsonNode sh = v.get("shape");
            JsonNode off = v.get("data_offsets");
            if (dt == null || !dt.isTextual() || sh == null || !sh.isArray() || off == null || !off.isArray() || off.size() != 2) {
                throw new CheckpointException(where + ": header entry needs dtype, shape and data_offsets [begin, end]");
            }
            long[] shape = new long[sh.size()];
            long numel = 1;
            for (int i = 0; i < shape.length; i++) {
                if (!sh.get(i).canConvertToLong() || sh.get(i).asLong() < 0) {
                    throw new CheckpointException(where + ": bad shape " + sh);
                }
                shape[i] = sh.get(i).asLong();
                numel = Math.multiplyExact(numel, shape[i]);
            }
            long begin = off.get(0).asLong(-1);
            long end = off.get(1).asLong(-1);
            if (begin < 0 || end < begin || end > dataSize) {
                throw new CheckpointException(where + ": data_offsets [" + off.get(0) + ", " + off.get(1)
                        + "] outside the data region of " + dataSize + " bytes (truncated file or lying header)");
            }
            int elementBytes = elementBytes(dt.asText());
            if (elementBytes > 0 && end - begin != numel * elementBytes) {
                throw new CheckpointException(where + ": " + (end - begin) + " bytes do not hold shape " + sh
                        + " of " + dt.asText() + " (" + numel * elementBytes + " bytes)");
            }
            DType quantized = DType.fromSafetensors(dt.asText());
            if (quantized != null && quantized.quantized()) {
                // epserve's own block-quantized tensors (expert caches): rows of whole blocks.
                long cols = shape.length == 0 ? 1 : shape[shape.length - 1];
                if (cols % quantized.blockSize() != 0) {
                    throw new CheckpointException(where + ": shape " + sh + " of " + dt.asText() + " has rows of " + cols
                            + " weights, not whole blocks of " + quantized.blockSize());
                }
                if (end - begin != quantized.bytesFor(numel)) {
                    throw new CheckpointException(where + ": " + (end - begin) + " bytes do not hold shape " + sh
                            + " of " + dt.asText() + " (" + quantized.bytesFor(numel) + " bytes)");
                }
            }
            entries.put(name, new Entry(name, dt.asText(), shape, begin, end));
        }
        List<Entry> byOffset = new ArrayList<>(entries.values());
        byOffset.sort((a, b) -> Long.compare(a.begin(), b.begin()));
        for (int i = 1; i < byOffset.size(); i++) {
            Entry prev = byOffset.get(i - 1);
            Entry cur = byOffset.get(i);
            if (cur.begin() < prev.end()) {
                throw new CheckpointException(file + ": tensor '" + cur.name() + "' overlaps tensor '" + prev.name()
                        + "' (lying header)");
            }
        }
        return entries;
    }

    /** Bytes per element of a safetensors dtype name, or 0 when unknown (checked when the tensor is used). */
    static int elementBytes(String dtype) {
        return switch (dtype) {
            case "F64", "I64", "U64" -> 8;
            case "F32", "I32", "U32" -> 4;
            case "F16", "BF16", "I16", "U16" -> 2;
            case "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL" -> 1;
            default -> 0;
        };
    }

    public Path path() {
        return path;
    }

    public Map<String, Entry> entries() {
        return entries;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    public boolean contains(String name) {
        return entries.containsKey(name);
    }

    /** The tensor as a view of the mapping; refuses dtypes epserve cannot compute on. */
    public Tensor tensor(String name) {
        Entry e = entries.get(name);
        if (e == null) {
            throw new CheckpointException(path.getFileName() + ": missing tensor '" + name + "'");
        }
        DType dtype = e.dtype();
        if (dtype == null) {
            throw new CheckpointException(path.getFileName() + ": tensor '" + name + "' has dtype " + e.dtypeName()
                    + ", which epserve does not compute on (supported: F32, BF16, F16, and epserve's Q8_0, Q4_0, Q4_K)");
        }
        return new Tensor(name, segment(e), dtype, e.shape());
    }

    /**
     * The bytes of a tensor of any stored dtype (e.g. the U8 blocks and scales of MXFP4 experts,
     * which a reader repacks), refused unless the dtype is {@code dtypeName}.
     */
    public MemorySegment raw(String name, String dtypeName) {
        Entry e = entries.get(name);
        if (e == null) {
            throw new CheckpointException(path.getFileName() + ": missing tensor '" + name + "'");
        }
        if (!e.dtypeName().equals(dtypeName)) {
            throw new CheckpointException(path.getFileName() + ": tensor '" + name + "' has dtype " + e.dtypeName() + ", expected "
                    + dtypeName);
        }
        return segment(e);
    }

    private MemorySegment segment(Entry e) {
        if (data != null) {
            return data.asSlice(e.begin(), e.end() - e.begin());
        }
        return mapped.computeIfAbsent(e.name(), n -> {
            try {
                MemorySegment s = channel.map(FileChannel.MapMode.READ_ONLY, dataStart + e.begin(), e.end() - e.begin(), arena);
                mappedBytes.addAndGet(s.byteSize());
                return s;
            } catch (IOException ex) {
                throw new CheckpointException(path.getFileName() + ": tensor '" + n + "': cannot map: " + ex.getMessage(), ex);
            }
        });
    }

    /** Bytes mapped so far: the whole data region, or the sum of the tensors asked for. */
    public long mappedBytes() {
        return mappedBytes.get();
    }

    @Override
    public void close() {
        closeQuietly(arena, channel);
    }
}
