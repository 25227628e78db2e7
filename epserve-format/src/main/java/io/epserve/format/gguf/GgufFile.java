package io.epserve.format.gguf;

import io.epserve.format.CheckpointException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * One GGUF file (llama.cpp's format, versions 2 and 3), mapped read-only. Tensors are slices of
 * the mapping, never copies, so processes mapping the same file share its pages.
 *
 * <pre>
 *  +-------+---------+--------------+-----------+----------------------+---------+------------------+
 *  | magic | version | tensor_count | kv_count  | kv pairs             | tensor  | pad to alignment |
 *  | GGUF  | u32     | u64          | u64       | key: str, type: u32, | infos   | then tensor data |
 *  +-------+---------+--------------+-----------+ value                +---------+------------------+
 *  str    = u64 length + UTF-8 bytes          array = item type u32 + count u64 + items
 *  tensor info = name: str, n_dims: u32, ne: n_dims × u64 (ne0 = contiguous row length),
 *                type: u32 (ggml_type), offset: u64 (from the start of the data, a multiple of
 *                the alignment, which is general.alignment or 32)
 * </pre>
 * All little-endian. The whole header is checked when the file opens: every length inside the
 * file, every tensor's bytes inside the data section and not overlapping another's, every
 * offset aligned, every type a ggml type. A file that fails any check is refused with one line
 * naming the file and the key or tensor at fault.
 */
public final class GgufFile implements AutoCloseable {
    static final int MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
    static final int DEFAULT_ALIGNMENT = 32;
    /** Strings and arrays longer than this are not a header we should trust (the file would be petabytes). */
    private static final long MAX_COUNT = 1L << 40;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** A tensor's directory entry: ggml shape {@code ne} (ne[0] innermost), type, and bytes relative to the data section. */
    public record TensorInfo(String name, GgmlType type, long[] ne, long offset, long bytes) {
        /** The shape in row-major order (Hugging Face / numpy order): ne reversed. */
        public long[] shape() {
            long[] s = new long[ne.length];
            for (int i = 0; i < ne.length; i++) {
                s[i] = ne[ne.length - 1 - i];
            }
            return s;
        }

        public long elements() {
            long n = 1;
            for (long d : ne) {
                n *= d;
            }
            return n;
        }

        @Override
        public String toString() {
            return name + " " + type + " ne=" + Arrays.toString(ne) + " @" + offset + "+" + bytes;
        }
    }

    private final Path path;
    private final Arena arena;
    private final MemorySegment file;
    private final int version;
    private final GgufMetadata metadata;
    private final Map<String, TensorInfo> tensors;
    private final int alignment;
    private final long dataStart;

    private GgufFile(Path path, Arena arena, MemorySegment file, int version, GgufMetadata metadata,
                     Map<String, TensorInfo> tensors, int alignment, long dataStart) {
        this.path = path;
        this.arena = arena;
        this.file = file;
        this.version = version;
        this.metadata = metadata;
        this.tensors = tensors;
        this.alignment = alignment;
        this.dataStart = dataStart;
    }

    /** Maps the file and validates its header and tensor directory. */
    public static GgufFile open(Path path) {
        String name = path.getFileName().toString();
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            MemorySegment seg = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            return parse(path, name, arena, seg);
        } catch (NoSuchFileException e) {
            arena.close();
            throw new CheckpointException(name + ": file not found (" + path + ")");
        } catch (IOException e) {
            arena.close();
            throw new CheckpointException(name + ": cannot read: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static GgufFile parse(Path path, String name, Arena arena, MemorySegment seg) {
        Cursor c = new Cursor(name, seg);
        if (seg.byteSize() < 4 || c.u32("magic") != MAGIC) {
            throw new CheckpointException(name + ": not a GGUF file (no GGUF magic at byte 0)");
        }
        int version = c.u32("version");
        if (version != 2 && version != 3) {
            throw new CheckpointException(name + ": GGUF version " + version + " is not supported (2 and 3 are)");
        }
        long tensorCount = c.count("tensor_count");
        long kvCount = c.count("kv_count");
        Map<String, Object> kv = new LinkedHashMap<>();
        Map<String, GgufMetadata.ValueType> kinds = new LinkedHashMap<>();
        for (long i = 0; i < kvCount; i++) {
            String key = c.string("key of metadata pair #" + i);
            int typeId = c.u32("type of metadata key '" + key + "'");
            GgufMetadata.ValueType type = GgufMetadata.ValueType.byId(typeId);
            if (type == null) {
                throw new CheckpointException(name + ": metadata key '" + key + "' has unknown value type " + typeId);
            }
            Object value = type == GgufMetadata.ValueType.ARRAY ? c.array(key) : c.scalar(type, "metadata key '" + key + "'");
            if (kv.put(key, value) != null) {
                throw new CheckpointException(name + ": metadata key '" + key + "' appears twice");
            }
            kinds.put(key, type);
        }
        GgufMetadata metadata = new GgufMetadata(name, kv, kinds);
        int alignment = DEFAULT_ALIGNMENT;
        if (kv.containsKey("general.alignment")) {
            long a = metadata.requireLong("general.alignment");
            if (a < 1 || a > (1 << 20) || Long.bitCount(a) != 1) {
                throw new CheckpointException(name + ": metadata key 'general.alignment' is " + a + ", not a power of two");
            }
            alignment = (int) a;
        }
        List<TensorInfo> infos = new ArrayList<>();
        Map<String, TensorInfo> byName = new LinkedHashMap<>();
        for (long i = 0; i < tensorCount; i++) {
            String tn = c.string("name of tensor #" + i);
            String where = "tensor '" + tn + "'";
            int nDims = c.u32("dimension count of " + where);
            if (nDims < 1 || nDims > 4) {
                throw new CheckpointException(name + ": " + where + " has " + nDims + " dimensions (GGUF allows 1 to 4)");
            }
            long[] ne = new long[nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++) {
                ne[d] = c.u64("shape of " + where);
                if (ne[d] < 0 || ne[d] > MAX_COUNT) {
                    throw new CheckpointException(name + ": " + where + " has a bad shape entry " + Long.toUnsignedString(ne[d]));
                }
                try {
                    elements = Math.multiplyExact(elements, Math.max(1, ne[d]));
                } catch (ArithmeticException e) {
                    throw new CheckpointException(name + ": " + where + " has shape " + Arrays.toString(ne) + ", too many elements");
                }
                if (ne[d] == 0) {
                    elements = 0;
                }
            }
            int typeId = c.u32("type of " + where);
            GgmlType type = GgmlType.byId(Integer.toUnsignedLong(typeId));
            if (type == null) {
                throw new CheckpointException(name + ": " + where + " has unknown ggml type " + Integer.toUnsignedString(typeId));
            }
            if (ne[0] % type.blockSize() != 0) {
                throw new CheckpointException(name + ": " + where + " of type " + type + " has rows of " + ne[0]
                        + " elements, not whole blocks of " + type.blockSize());
            }
            long offset = c.u64("offset of " + where);
            TensorInfo info = new TensorInfo(tn, type, ne, offset, type.bytesFor(elements));
            if (byName.put(tn, info) != null) {
                throw new CheckpointException(name + ": " + where + " appears twice in the tensor directory");
            }
            infos.add(info);
        }
        long dataStart = alignUp(c.pos, alignment);
        long dataSize = seg.byteSize() - dataStart;
        for (TensorInfo t : infos) {
            String where = name + ": tensor '" + t.name() + "'";
            if (t.offset() < 0 || t.offset() % alignment != 0) {
                throw new CheckpointException(where + ": offset " + Long.toUnsignedString(t.offset()) + " is not a multiple of the alignment "
                        + alignment + " (lying tensor directory)");
            }
            if (t.offset() > dataSize || t.bytes() > dataSize - t.offset()) {
                throw new CheckpointException(where + ": bytes [" + t.offset() + ", " + (t.offset() + t.bytes()) + ") of the data section lie past "
                        + "its end (" + Math.max(0, dataSize) + " bytes): truncated file or lying tensor directory");
            }
        }
        List<TensorInfo> byOffset = new ArrayList<>(infos);
        byOffset.sort((a, b) -> Long.compare(a.offset(), b.offset()));
        for (int i = 1; i < byOffset.size(); i++) {
            TensorInfo prev = byOffset.get(i - 1);
            TensorInfo cur = byOffset.get(i);
            if (cur.offset() < prev.offset() + prev.bytes()) {
                throw new CheckpointException(name + ": tensor '" + cur.name() + "' overlaps tensor '" + prev.name()
                        + "' (lying tensor directory)");
            }
        }
        return new GgufFile(path, arena, seg, version, metadata, Collections.unmodifiableMap(byName), alignment, dataStart);
    }

    static long alignUp(long x, long a) {
        return (x + a - 1) / a * a;
    }

    public Path path() {
        return path;
    }

    public int version() {
        return version;
    }

    public GgufMetadata metadata() {
        return metadata;
    }

    /** The tensor directory, in file order. */
    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    public int alignment() {
        return alignment;
    }

    /** Absolute file offset of the data section. */
    public long dataStart() {
        return dataStart;
    }

    /** The bytes of a tensor, a slice of the mapping. */
    public MemorySegment data(TensorInfo t) {
        return file.asSlice(dataStart + t.offset(), t.bytes());
    }

    /** Bytes mapped (the whole file). */
    public long mappedBytes() {
        return file.byteSize();
    }

    /** The decoded values of the first {@code n} elements of a tensor (whole rows), for tests and small tensors. */
    public float[] dequantize(String tensorName, int n) {
        TensorInfo t = tensors.get(tensorName);
        if (t == null) {
            throw new CheckpointException(path.getFileName() + ": missing tensor '" + tensorName + "'");
        }
        if (n < 0 || n > t.elements()) {
            throw new IllegalArgumentException(tensorName + " has " + t.elements() + " elements, not " + n);
        }
        float[] out = new float[n];
        GgmlDequantizer.decode(t.type(), data(t), 0, out, 0, n, path.getFileName() + ": tensor '" + tensorName + "'");
        return out;
    }

    @Override
    public void close() {
        arena.close();
    }

    /** Bounds-checked little-endian reads over the mapping; running past the end is a truncated file. */
    private static final class Cursor {
        final String file;
        final MemorySegment s;
        long pos;

        Cursor(String file, MemorySegment s) {
            this.file = file;
            this.s = s;
        }

        private void need(long n, String what) {
            if (n < 0 || pos + n > s.byteSize() || pos + n < pos) {
                throw new CheckpointException(file + ": truncated GGUF header: the file ends inside the " + what
                        + " (byte " + pos + " of " + s.byteSize() + ")");
            }
        }

        int u32(String what) {
            need(4, what);
            int v = s.get(U32, pos);
            pos += 4;
            return v;
        }

        long u64(String what) {
            need(8, what);
            long v = s.get(U64, pos);
            pos += 8;
            return v;
        }

        long count(String what) {
            long n = u64(what);
            if (n < 0 || n > MAX_COUNT) {
                throw new CheckpointException(file + ": " + what + " " + Long.toUnsignedString(n) + " is not plausible (corrupt header)");
            }
            return n;
        }

        String string(String what) {
            long len = count("length of the " + what);
            need(len, what);
            if (len > Integer.MAX_VALUE) {
                throw new CheckpointException(file + ": " + what + " is " + len + " bytes long (corrupt header)");
            }
            byte[] b = s.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE);
            pos += len;
            return new String(b, StandardCharsets.UTF_8);
        }

        Object scalar(GgufMetadata.ValueType t, String what) {
            switch (t) {
                case UINT8, INT8, BOOL -> need(1, what);
                case UINT16, INT16 -> need(2, what);
                case UINT32, INT32, FLOAT32 -> need(4, what);
                case UINT64, INT64, FLOAT64 -> need(8, what);
                case STRING -> {
                    return string(what);
                }
                case ARRAY -> throw new CheckpointException(file + ": " + what + " is an array nested in an array (not supported)");
            }
            Object v = switch (t) {
                case UINT8 -> (long) Byte.toUnsignedInt(s.get(ValueLayout.JAVA_BYTE, pos));
                case INT8 -> (long) s.get(ValueLayout.JAVA_BYTE, pos);
                case BOOL -> {
                    byte b = s.get(ValueLayout.JAVA_BYTE, pos);
                    if (b != 0 && b != 1) {
                        throw new CheckpointException(file + ": " + what + " is a bool of value " + b);
                    }
                    yield b == 1;
                }
                case UINT16 -> (long) Short.toUnsignedInt(s.get(U16, pos));
                case INT16 -> (long) s.get(U16, pos);
                case UINT32 -> Integer.toUnsignedLong(s.get(U32, pos));
                case INT32 -> (long) s.get(U32, pos);
                case FLOAT32 -> (double) s.get(F32, pos);
                case UINT64, INT64 -> s.get(U64, pos);
                case FLOAT64 -> s.get(F64, pos);
                default -> throw new IllegalStateException(t.name());
            };
            pos += t.bytes();
            return v;
        }

        GgufMetadata.Array array(String key) {
            String what = "array of metadata key '" + key + "'";
            int itemId = u32("item type of the " + what);
            GgufMetadata.ValueType item = GgufMetadata.ValueType.byId(itemId);
            if (item == null || item == GgufMetadata.ValueType.ARRAY) {
                throw new CheckpointException(file + ": metadata key '" + key + "' is an array of unsupported item type " + itemId);
            }
            long n = count("length of the " + what);
            // every item takes at least its width (a string its 8-byte length): a count the file cannot hold is refused
            // here, before anything is allocated for it
            need(n * (item == GgufMetadata.ValueType.STRING ? 8 : item.bytes()), what);
            if (n > Integer.MAX_VALUE) {
                throw new CheckpointException(file + ": " + what + " has " + n + " items (corrupt header)");
            }
            List<Object> items = new ArrayList<>((int) n);
            for (long i = 0; i < n; i++) {
                items.add(scalar(item, what));
            }
            return new GgufMetadata.Array(item, Collections.unmodifiableList(items));
        }
    }
}
