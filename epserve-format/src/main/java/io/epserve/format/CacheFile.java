package io.epserve.format;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A file derived from a model once (converted weights) and then mapped read-only by every process
 * on the host. It lives in a preferred folder (beside the model) or, when that cannot be written,
 * a fallback folder ({@link #defaultDir()} below). Building happens under an exclusive lock on
 * {@code <file>.lock} (a file lock between processes, a {@link ReentrantLock} within this JVM):
 * the first process builds, the others wait and then open its result. The builder writes under a
 * temporary name and renames into place ({@link SafetensorsWriter}), so a reader never sees a
 * partial file.
 */
public final class CacheFile {
    private CacheFile() {}

    /** Opens an existing file if it is valid for the caller (metadata, key, tensors); null if absent or stale. */
    @FunctionalInterface
    public interface Opener<T> {
        T open(Path file);
    }

    /** Writes the file (to a temporary name first, then renamed to {@code file}). */
    @FunctionalInterface
    public interface Builder {
        void build(Path file) throws IOException;
    }

    /** What {@link #openOrBuild} opened, and whether this process built it. */
    public record Opened<T>(T value, Path file, boolean built) {}

    /** The folder beside a model that holds the files derived from it. */
    public static final String DIR_NAME = ".epserve-cache";

    private static final Map<Path, ReentrantLock> JVM_LOCKS = new ConcurrentHashMap<>();

    /** $EPSERVE_CACHE, else $XDG_CACHE_HOME/epserve, else ~/.cache/epserve. */
    public static Path defaultDir() {
        String env = System.getenv("EPSERVE_CACHE");
        if (env != null && !env.isBlank()) {
            return Path.of(env);
        }
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("epserve");
    }

    /**
     * The file {@code name} opened from {@code preferredDir} or {@code fallbackDir}, whichever
     * holds a valid one; otherwise built into the first of them that can be written, then opened.
     * Returns null when neither can be written (the caller decides whether that is an error).
     * Throws CheckpointException when a file just built does not open.
     */
    public static <T> Opened<T> openOrBuild(Path preferredDir, Path fallbackDir, String name, Opener<T> opener, Builder builder)
            throws IOException {
        for (Path dir : List.of(preferredDir, fallbackDir)) {
            Path existing = dir.resolve(name);
            if (Files.isRegularFile(existing)) {
                T t = opener.open(existing);
                if (t != null) {
                    return new Opened<>(t, existing, false);
                }
            }
        }
        Path target = writableDir(preferredDir) ? preferredDir.resolve(name)
                : writableDir(fallbackDir) ? fallbackDir.resolve(name) : null;
        if (target == null) {
            return null;
        }
        ReentrantLock jvmLock = JVM_LOCKS.computeIfAbsent(target.toAbsolutePath().normalize(), p -> new ReentrantLock());
        jvmLock.lock();
        try (FileChannel lockFile = FileChannel.open(target.resolveSibling(name + ".lock"),
                StandardOpenOption.CREATE, StandardOpenOption.WRITE);
             FileLock ignored = lockFile.lock()) {
            // another process may have built it while this one waited for the lock
            T t = Files.isRegularFile(target) ? opener.open(target) : null;
            if (t != null) {
                return new Opened<>(t, target, false);
            }
            builder.build(target);
            t = opener.open(target);
            if (t == null) {
                throw new CheckpointException(target + ": the cache file just written does not read back");
            }
            return new Opened<>(t, target, true);
        } finally {
            jvmLock.unlock();
        }
    }

    /** Creates {@code dir} if needed; false if it cannot be written (read-only model folder, permissions). */
    static boolean writableDir(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            return false;
        }
        return Files.isDirectory(dir) && Files.isWritable(dir);
    }
}
