package io.epserve.format;

import io.epserve.format.gguf.GgufFile;
import io.epserve.format.gguf.GgufModel;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

/**
 * The identity of a checkpoint for caches derived from it: SHA-256 over config.json, and per
 * safetensors file (in name order) its name, size, whole header, and 16 samples of 4 KiB spread
 * over its data (for a GGUF model: its config, and per file the same with the GGUF header).
 * Cheap (a few hundred KiB read, not the weights), and it changes when the architecture, the
 * tensor layout or the bytes at the sampled places change, e.g. a model regenerated with another
 * seed (same header, same size). Not a content hash: a file patched in place between samples
 * keeps its key; delete the cache then.
 */
public final class SourceKey {
    private SourceKey() {}

    /** Bumped when a cache's meaning changes (a different quantizer gives different bytes). */
    static final String SALT = "epserve derived-weights cache; quantizer 1\n";
    static final int SAMPLES = 16;
    static final int SAMPLE_BYTES = 4096;

    /** The hex SHA-256 key of the checkpoint in {@code ckpt.dir()}. */
    public static String of(Checkpoint ckpt) {
        if (ckpt.gguf().isPresent()) {
            return of(ckpt.gguf().get());
        }
        MessageDigest sha = salted();
        Path dir = ckpt.dir();
        try {
            sha.update(Files.readAllBytes(dir.resolve("config.json")));
            List<String> files = ckpt.filesFor(n -> true);
            for (String f : files) {
                sha.update(("\nfile " + f + "\n").getBytes(StandardCharsets.UTF_8));
                digestFile(sha, dir.resolve(f));
            }
        } catch (IOException e) {
            throw new CheckpointException(dir + ": cannot read for the cache key: " + e.getMessage(), e);
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    /** The key of a GGUF model: its config, and per file its name, size, whole header (metadata + tensor directory) and samples of its data. */
    public static String of(GgufModel g) {
        MessageDigest sha = salted();
        sha.update(g.config().toString().getBytes(StandardCharsets.UTF_8));
        for (GgufFile f : g.files()) {
            sha.update(("\nfile " + f.path().getFileName() + "\n").getBytes(StandardCharsets.UTF_8));
            try (FileChannel ch = FileChannel.open(f.path(), StandardOpenOption.READ)) {
                sha.update(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, ch.size()));
                digestRegions(sha, ch, 0, f.dataStart());
            } catch (IOException e) {
                throw new CheckpointException(f.path() + ": cannot read for the cache key: " + e.getMessage(), e);
            }
        }
        return HexFormat.of().formatHex(sha.digest());
    }

    private static MessageDigest salted() {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            sha.update(SALT.getBytes(StandardCharsets.UTF_8));
            return sha;
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void digestFile(MessageDigest sha, Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            sha.update(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, size));
            ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            readFully(ch, len, 0);
            long headerLen = Math.min(len.getLong(0), Math.max(0, size - 8));
            digestRegions(sha, ch, 8, 8 + headerLen);
        }
    }

    /** Bytes [headerFrom, dataStart) whole (at most 100 MiB), then {@link #SAMPLES} samples of the data after them. */
    private static void digestRegions(MessageDigest sha, FileChannel ch, long headerFrom, long dataStart) throws IOException {
        ByteBuffer header = ByteBuffer.allocate((int) Math.min(dataStart - headerFrom, 100L << 20));
        readFully(ch, header, headerFrom);
        sha.update(header.flip());
        long data = ch.size() - dataStart;
        ByteBuffer sample = ByteBuffer.allocate(SAMPLE_BYTES);
        for (int i = 0; i < SAMPLES && data > 0; i++) {
            long at = dataStart + (data - Math.min(data, SAMPLE_BYTES)) * i / Math.max(1, SAMPLES - 1);
            sample.clear().limit((int) Math.min(SAMPLE_BYTES, data));
            readFully(ch, sample, at);
            sha.update(sample.flip());
        }
    }

    private static void readFully(FileChannel ch, ByteBuffer buf, long pos) throws IOException {
        while (buf.hasRemaining()) {
            int n = ch.read(buf, pos + buf.position());
            if (n < 0) {
                return;
            }
        }
    }
}
