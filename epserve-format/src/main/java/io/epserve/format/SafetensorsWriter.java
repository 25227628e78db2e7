package io.epserve.format;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.tensor.DType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.IntStream;

/**
 * Writes a safetensors file whose tensors are filled in place in a writable mapping (no heap
 * copy of the data), in parallel. Written to a temporary name and moved into place, so a reader
 * never sees half a file.
 */
public final class SafetensorsWriter {
    private SafetensorsWriter() {}

    public record Spec(String name, DType dtype, long[] shape) {
        public long bytes() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return dtype.bytesFor(n);
        }
    }

    /** Fills one tensor's bytes (little-endian, row-major). */
    @FunctionalInterface
    public interface Filler {
        void fill(int index, Spec spec, MemorySegment target);
    }

    public static void write(Path file, List<Spec> specs, Filler filler) throws IOException {
        write(file, Map.of(), specs, filler);
    }

    /** As {@link #write(Path, List, Filler)}, with extra {@code __metadata__} entries. */
    public static void write(Path file, Map<String, String> metadata, List<Spec> specs, Filler filler) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode header = json.createObjectNode();
        ObjectNode meta = header.putObject("__metadata__").put("format", "pt");
        new TreeMap<>(metadata).forEach(meta::put);
        long[] offsets = new long[specs.size() + 1];
        for (int i = 0; i < specs.size(); i++) {
            Spec s = specs.get(i);
            offsets[i + 1] = offsets[i] + s.bytes();
            ObjectNode e = header.putObject(s.name());
            e.put("dtype", s.dtype().safetensorsName());
            var shape = e.putArray("shape");
            for (long d : s.shape()) {
                shape.add(d);
            }
            var off = e.putArray("data_offsets");
            off.add(offsets[i]);
            off.add(offsets[i + 1]);
        }
        byte[] hb = json.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
        int pad = (int) ((8 - hb.length % 8) % 8); // the format aligns the data region to 8 bytes
        byte[] padded = new byte[hb.length + pad];
        System.arraycopy(hb, 0, padded, 0, hb.length);
        for (int i = hb.length; i < padded.length; i++) {
            padded[i] = ' ';
        }
        long dataStart = 8 + padded.length;
        long total = dataStart + offsets[specs.size()];
        // A name of its own per writer: two processes writing the same file never share a temporary.
        Path tmp = file.resolveSibling(file.getFileName() + "." + ProcessHandle.current().pid() + "-"
                + Long.toHexString(System.nanoTime()) + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.READ, StandardOpenOption.WRITE);
             Arena arena = Arena.ofShared()) {
            MemorySegment out = ch.map(FileChannel.MapMode.READ_WRITE, 0, total, arena);
            out.set(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, padded.length);
            MemorySegment.copy(MemorySegment.ofArray(padded), 0, out, 8, padded.length);
            IntStream.range(0, specs.size()).parallel().forEach(i ->
                    filler.fill(i, specs.get(i), out.asSlice(dataStart + offsets[i], offsets[i + 1] - offsets[i])));
            out.force();
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(tmp);
            throw e;
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
