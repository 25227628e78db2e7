package io.epserve.rpc.shm;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.nio.file.attribute.UserPrincipal;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * A pair of {@link ShmRing}s in one memory-mapped file: requests from a frontend to a co-located
 * expert worker, answers back. The frontend creates it (mode 0600, a random name, a random token
 * in its header), the worker opens it by name in its own shared-memory folder and serves it only
 * when the token it was told over its authenticated control channel matches; then the frontend
 * deletes the name, so nobody else can open the file afterwards.
 * <pre>
 *   byte 0     i64   magic "EPSRING1"
 *        8     i32   version (1)
 *        12    i32   capacity C of each data area (a power of two)
 *        16    u8[32] token
 *        48    i32   closed: 0 open, 1 either side gave the rings up
 *        256   requests' control block   (ShmRing, 256 bytes; frontend produces, worker consumes)
 *        512   answers' control block    (worker produces, frontend consumes)
 *        4096  requests' data area, C bytes
 *        4096+C answers' data area, C bytes            file size 4096 + 2·C
 * </pre>
 * The mapping belongs to an automatic arena: it is unmapped once unreachable, never while a
 * thread may still touch it.
 */
public final class RingFile {
    /** File names are this prefix and 32 lowercase hex digits; a worker opens nothing else. */
    public static final String NAME_PREFIX = "epserve-ring-";
    private static final Pattern NAME = Pattern.compile("epserve-ring-[0-9a-f]{32}");
    /** Data area of each direction by default: a prefill of about 500 tokens fits in one message. */
    public static final int DEFAULT_CAPACITY = 8 << 20;
    /** How long a waiting side spins before it sleeps (-Depserve.shm.spinMicros, default 20). */
    public static final long SPIN_NANOS = TimeUnit.MICROSECONDS.toNanos(Long.getLong("epserve.shm.spinMicros", 20));
    public static final int TOKEN_BYTES = 32;
    /** The environment variable naming the shared-memory folder (default /dev/shm). */
    public static final String DIR_ENV = "EPSERVE_SHM_DIR";

    static final long MAGIC = 0x31474e4952535045L; // "EPSRING1", little-endian
    static final int VERSION = 1;
    private static final long OFF_MAGIC = 0;
    private static final long OFF_VERSION = 8;
    private static final long OFF_CAPACITY = 12;
    private static final long OFF_TOKEN = 16;
    private static final long OFF_CLOSED = 48;
    private static final long OFF_REQUESTS = 256;
    private static final long OFF_ANSWERS = 512;
    static final long HEADER_BYTES = 4096;

    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle INT = I32.varHandle();
    private static final SecureRandom RANDOM = new SecureRandom();

    private final String name;
    private final Path path;
    private final MemorySegment map;
    private final byte[] token;
    private final ShmRing requests;
    private final ShmRing answers;

    private RingFile(String name, Path path, MemorySegment map, byte[] token, long spinNanos) {
        this.name = name;
        this.path = path;
        this.map = map;
        this.token = token;
        int c = map.get(I32, OFF_CAPACITY);
        this.requests = new ShmRing(map.asSlice(OFF_REQUESTS, ShmRing.CONTROL_BYTES), map.asSlice(HEADER_BYTES, c), spinNanos);
        this.answers = new ShmRing(map.asSlice(OFF_ANSWERS, ShmRing.CONTROL_BYTES), map.asSlice(HEADER_BYTES + c, c), spinNanos);
    }

    /**
     * Creates a new ring file in {@code dir} (mode 0600, a fresh random name and token), mapped.
     *
     * @param capacity bytes of each direction's data area, a power of two
     */
    public static RingFile create(Path dir, int capacity, long spinNanos) throws IOException {
        if (capacity < 4096 || Integer.bitCount(capacity) != 1) {
            throw new IllegalArgumentException("ring capacity must be a power of two of at least 4 KiB, got " + capacity);
        }
        byte[] id = new byte[16];
        byte[] token = new byte[TOKEN_BYTES];
        RANDOM.nextBytes(id);
        RANDOM.nextBytes(token);
        String name = NAME_PREFIX + HexFormat.of().formatHex(id);
        Path path = dir.resolve(name);
        Files.createFile(path, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS)) {
            long size = HEADER_BYTES + 2L * capacity;
            MemorySegment map = ch.map(FileChannel.MapMode.READ_WRITE, 0, size, Arena.ofAuto());
            map.set(I32, OFF_VERSION, VERSION);
            map.set(I32, OFF_CAPACITY, capacity);
            MemorySegment.copy(MemorySegment.ofArray(token), 0, map, OFF_TOKEN, TOKEN_BYTES);
            // the magic last: a file whose header is not written yet is refused as not a ring
            map.set(I64, OFF_MAGIC, MAGIC);
            return new RingFile(name, path, map, token, spinNanos);
        } catch (IOException | RuntimeException e) {
            Files.deleteIfExists(path);
            throw e;
        }
    }

    /**
     * Opens the ring file {@code name} in {@code dir}: a regular file (not a link) of this
     * process's user, whose header is a ring's and whose token is {@code token}. Throws
     * {@link IllegalArgumentException} for a name that is not a ring's, IOException for the rest,
     * with the reason.
     */
    public static RingFile open(Path dir, String name, byte[] token, long spinNanos) throws IOException {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("'" + name + "' is not a ring file name (" + NAME_PREFIX + " and 32 hex digits)");
        }
        if (token == null || token.length != TOKEN_BYTES) {
            throw new IllegalArgumentException("a ring token has " + TOKEN_BYTES + " bytes");
        }
        Path path = dir.resolve(name);
        PosixFileAttributes attrs = Files.readAttributes(path, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        if (!attrs.isRegularFile()) {
            throw new IOException(name + " is not a regular file");
        }
        UserPrincipal me = processOwner();
        if (me != null && !attrs.owner().equals(me)) {
            throw new IOException(name + " belongs to " + attrs.owner().getName() + ", not to " + me.getName());
        }
        long size = attrs.size();
        if (size < HEADER_BYTES + 2 * 4096L || size > HEADER_BYTES + (2L << 30)) {
            throw new IOException(name + " has " + size + " bytes: not a ring file");
        }
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS)) {
            MemorySegment map = ch.map(FileChannel.MapMode.READ_WRITE, 0, size, Arena.ofAuto());
            if (map.get(I64, OFF_MAGIC) != MAGIC || map.get(I32, OFF_VERSION) != VERSION) {
                throw new IOException(name + " is not a ring file of version " + VERSION);
            }
            int c = map.get(I32, OFF_CAPACITY);
            if (c < 4096 || Integer.bitCount(c) != 1 || size != HEADER_BYTES + 2L * c) {
                throw new IOException(name + ": capacity " + c + " does not match its size " + size);
            }
            byte[] stored = map.asSlice(OFF_TOKEN, TOKEN_BYTES).toArray(ValueLayout.JAVA_BYTE);
            if (!MessageDigest.isEqual(stored, token)) {
                throw new IOException(name + ": the token does not match");
            }
            return new RingFile(name, null, map, stored, spinNanos);
        }
    }

    /** The file's name (no folder). */
    public String name() {
        return name;
    }

    /** The token in the header (the creator sends it to the worker over the authenticated channel). */
    public byte[] token() {
        return token.clone();
    }

    /** Frontend → worker. */
    public ShmRing requests() {
        return requests;
    }

    /** Worker → frontend. */
    public ShmRing answers() {
        return answers;
    }

    /** Deletes the file's name (the creator does, once the worker mapped it: mappings stay). Quiet when gone. */
    public void unlink() {
        if (path != null) {
            try {
                Files.deleteIfExists(path);
            } catch (IOException e) {
                // nothing more to do: /dev/shm is cleaned at reboot, and the name is random
            }
        }
    }

    /** The whole mapping (tests break rings on purpose through it). */
    MemorySegment mapping() {
        return map;
    }

    /** Whether either side gave the rings up. */
    public boolean closed() {
        return (int) INT.getVolatile(map, OFF_CLOSED) != 0;
    }

    /** Gives the rings up for both sides and wakes whoever waits on them; idempotent. */
    public void close() {
        INT.setVolatile(map, OFF_CLOSED, 1);
        requests.wakeConsumer();
        answers.wakeConsumer();
    }

    /** This process's user (the owner of Linux's /proc/self), or null where that cannot be told. */
    private static UserPrincipal processOwner() {
        try {
            return Files.getOwner(Path.of("/proc/self"));
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    /**
     * The folder both sides put and look for ring files in: {@code $EPSERVE_SHM_DIR}, else
     * {@code /dev/shm}; null when that is not a directory (no shared memory here).
     */
    public static Path defaultDir() {
        String env = System.getenv(DIR_ENV);
        Path dir = Path.of(env != null && !env.isBlank() ? env : "/dev/shm");
        return Files.isDirectory(dir) ? dir : null;
    }

    /**
     * This machine's identity for this boot (Linux's {@code /proc/sys/kernel/random/boot_id}),
     * which a frontend and a worker compare to know they share a host; empty where unknown.
     */
    public static String hostId() {
        return HOST_ID;
    }

    private static final String HOST_ID = readHostId();

    private static String readHostId() {
        try {
            return Files.readString(Path.of("/proc/sys/kernel/random/boot_id")).trim();
        } catch (IOException | RuntimeException e) {
            return "";
        }
    }
}
