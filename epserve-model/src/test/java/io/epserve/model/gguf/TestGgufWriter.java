package io.epserve.model.gguf;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes GGUF v3 files as gguf-py's GGUFWriter does (header, metadata, tensor infos, data aligned
 * to 32), so tests can build files llama.cpp's tools would write for models it has no fixture for.
 */
final class TestGgufWriter {
    /** One metadata pair, already encoded after its key: value type u32 + value. */
    private record Kv(String key, byte[] typeAndValue) {}

    /** One tensor: ggml type id, ne (ne[0] innermost), bytes. */
    record TensorData(String name, int type, long[] ne, byte[] data) {}

    private final List<Kv> kv = new ArrayList<>();
    private final List<TensorData> tensors = new ArrayList<>();

    private static ByteBuffer buf(int n) {
        return ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static byte[] str(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return buf(8 + b.length).putLong(b.length).put(b).array();
    }

    TestGgufWriter u32(String key, long v) {
        kv.add(new Kv(key, buf(8).putInt(4).putInt((int) v).array()));
        return this;
    }

    TestGgufWriter u16(String key, int v) {
        kv.add(new Kv(key, buf(6).putInt(2).putShort((short) v).array()));
        return this;
    }

    TestGgufWriter i32(String key, int v) {
        kv.add(new Kv(key, buf(8).putInt(5).putInt(v).array()));
        return this;
    }

    TestGgufWriter f32(String key, double v) {
        kv.add(new Kv(key, buf(8).putInt(6).putFloat((float) v).array()));
        return this;
    }

    TestGgufWriter bool(String key, boolean v) {
        kv.add(new Kv(key, buf(5).putInt(7).put((byte) (v ? 1 : 0)).array()));
        return this;
    }

    TestGgufWriter string(String key, String v) {
        byte[] s = str(v);
        kv.add(new Kv(key, buf(4 + s.length).putInt(8).put(s).array()));
        return this;
    }

    TestGgufWriter strings(String key, List<String> v) {
        int n = 16;
        List<byte[]> items = new ArrayList<>();
        for (String s : v) {
            byte[] b = str(s);
            items.add(b);
            n += b.length;
        }
        ByteBuffer b = buf(n).putInt(9).putInt(8).putLong(v.size());
        items.forEach(b::put);
        kv.add(new Kv(key, b.array()));
        return this;
    }

    TestGgufWriter floats(String key, float[] v) {
        ByteBuffer b = buf(16 + 4 * v.length).putInt(9).putInt(6).putLong(v.length);
        for (float f : v) {
            b.putFloat(f);
        }
        kv.add(new Kv(key, b.array()));
        return this;
    }

    TestGgufWriter ints(String key, int[] v) {
        ByteBuffer b = buf(16 + 4 * v.length).putInt(9).putInt(5).putLong(v.length);
        for (int i : v) {
            b.putInt(i);
        }
        kv.add(new Kv(key, b.array()));
        return this;
    }

    TestGgufWriter tensor(String name, int type, long[] ne, byte[] data) {
        tensors.add(new TensorData(name, type, ne, data));
        return this;
    }

    /** The metadata pairs of {@code other}, appended (the first split file keeps the model's keys). */
    TestGgufWriter copyMetadataFrom(TestGgufWriter other) {
        kv.addAll(other.kv);
        return this;
    }

    List<TensorData> tensors() {
        return tensors;
    }

    void write(Path file) throws IOException {
        try (OutputStream out = Files.newOutputStream(file)) {
            long pos = 0;
            ByteBuffer h = buf(24).putInt(0x46554747).putInt(3).putLong(tensors.size()).putLong(kv.size());
            out.write(h.array());
            pos += 24;
            for (Kv p : kv) {
                byte[] k = str(p.key());
                out.write(k);
                out.write(p.typeAndValue());
                pos += k.length + p.typeAndValue().length;
            }
            long offset = 0;
            List<Long> offsets = new ArrayList<>();
            for (TensorData t : tensors) {
                byte[] n = str(t.name());
                ByteBuffer info = buf(n.length + 4 + 8 * t.ne().length + 4 + 8);
                info.put(n).putInt(t.ne().length);
                for (long d : t.ne()) {
                    info.putLong(d);
                }
                info.putInt(t.type()).putLong(offset);
                out.write(info.array());
                pos += info.capacity();
                offsets.add(offset);
                offset = align(offset + t.data().length);
            }
            out.write(new byte[(int) (align(pos) - pos)]);
            long dataPos = 0;
            for (int i = 0; i < tensors.size(); i++) {
                out.write(new byte[(int) (offsets.get(i) - dataPos)]);
                out.write(tensors.get(i).data());
                dataPos = offsets.get(i) + tensors.get(i).data().length;
            }
        }
    }

    private static long align(long x) {
        return (x + 31) / 32 * 32;
    }
}
