package io.epserve.rpc.shm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shared-memory ring on its own: messages come out as they went in, in order, across many
 * wrap-arounds; what cannot fit is refused; a consumer that stops consuming leaves the producer
 * a clear "no room" (and a bounded wait), never a hang; a closed file wakes a sleeping side; a
 * ring whose positions or records cannot be right is refused, not read out of bounds; and a
 * file is served only under its own name and token. Producer and consumer use two separate
 * mappings of one file, as two processes do.
 */
@Timeout(60)
class ShmRingTest {
    static final int CAPACITY = 4096;
    static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;

    /** Fills a message with bytes derived from its sequence number, so any mix-up shows. */
    static void fill(MemorySegment m, long seq) {
        for (long i = 0; i < m.byteSize(); i++) {
            m.set(ValueLayout.JAVA_BYTE, i, (byte) (seq * 31 + i));
        }
    }

    static void check(MemorySegment m, long seq, int length) {
        assertThat(m.byteSize()).as("length of message %d", seq).isEqualTo(length);
        for (long i = 0; i < m.byteSize(); i++) {
            if (m.get(ValueLayout.JAVA_BYTE, i) != (byte) (seq * 31 + i)) {
                throw new AssertionError("message " + seq + " byte " + i + " differs");
            }
        }
    }

    RingFile[] pair() throws IOException {
        RingFile a = RingFile.create(dir, CAPACITY, 0);
        RingFile b = RingFile.open(dir, a.name(), a.token(), 0);
        return new RingFile[] {a, b};
    }

    @Test
    void messagesComeOutInOrderAcrossWrapArounds() throws IOException {
        RingFile[] p = pair();
        ShmRing producer = p[0].requests();
        ShmRing consumer = p[1].requests();
        SplittableRandom r = new SplittableRandom(3);
        long written = 0;
        int[] lengths = new int[4000];
        long read = 0;
        long bytes = 0;
        while (read < lengths.length) {
            // write until the ring is full (or all are written), then read a random number back
            while (written < lengths.length) {
                int len = r.nextInt(0, producer.maxMessage() + 1) / (r.nextBoolean() ? 1 : 37);
                MemorySegment room = producer.claim(len);
                if (room == null) {
                    break;
                }
                fill(room, written);
                producer.publish();
                lengths[(int) written++] = len;
                bytes += len;
            }
            for (int k = r.nextInt(1, 4); k > 0 && read < written; k--) {
                MemorySegment m = consumer.poll();
                assertThat(m).as("message %d is published", read).isNotNull();
                check(m, read, lengths[(int) read]);
                consumer.release();
                read++;
            }
        }
        assertThat(consumer.poll()).isNull();
        assertThat(bytes).as("the ring wrapped many times").isGreaterThan(100L * CAPACITY);
    }

    @Test
    void aMessageLargerThanHalfTheRingIsRefusedAndAFullRingSaysSo() throws IOException {
        RingFile[] p = pair();
        ShmRing producer = p[0].requests();
        ShmRing consumer = p[1].requests();
        assertThat(producer.maxMessage()).isEqualTo(CAPACITY / 2 - 8);
        assertThatThrownBy(() -> producer.claim(producer.maxMessage() + 1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("at most " + producer.maxMessage());
        // the largest message fits whatever the position: after a small one, it needs padding first
        producer.claim(100);
        producer.publish();
        assertThat(consumer.poll()).isNotNull();
        consumer.release();
        for (int i = 0; i < 5; i++) {
            MemorySegment m = producer.claim(producer.maxMessage());
            assertThat(m).as("the largest message on an empty ring, round %d", i).isNotNull();
            fill(m, i);
            producer.publish();
            check(consumer.poll(), i, producer.maxMessage());
            consumer.release();
        }
        // a consumer that stopped consuming: no room, and a bounded wait for room gives up
        while (producer.claim(1000) != null) {
            producer.publish();
        }
        long t0 = System.nanoTime();
        assertThat(producer.claim(1000, TimeUnit.MILLISECONDS.toNanos(200), () -> false)).isNull();
        assertThat(System.nanoTime() - t0).isGreaterThanOrEqualTo(TimeUnit.MILLISECONDS.toNanos(200));
        // consuming makes room again
        int drained = 0;
        while (consumer.poll() != null) {
            consumer.release();
            drained++;
        }
        assertThat(drained).isGreaterThanOrEqualTo(3);
        assertThat(producer.claim(1000)).isNotNull();
    }

    @Test
    void onLinuxWaitsSleepOnAFutex() {
        String arch = System.getProperty("os.arch");
        Assumptions.assumeTrue(System.getProperty("os.name").startsWith("Linux") && (arch.equals("amd64") || arch.equals("aarch64")),
                "futex on Linux x86-64 and aarch64 only");
        assertThat(Futex.status()).isEqualTo("futex");
        assertThat(Futex.available()).isTrue();
    }

    @Test
    void aSleepingConsumerWakesForAMessageFromAnotherThreadAndForAClose() throws Exception {
        RingFile[] p = pair();
        ShmRing producer = p[0].answers();
        ShmRing consumer = p[1].answers();
        int n = 2000;
        // spin 0: the consumer sleeps on the futex whenever the ring is empty
        CompletableFuture<Long> sum = CompletableFuture.supplyAsync(() -> {
            long s = 0;
            for (int i = 0; i < n; i++) {
                while (!consumer.await(TimeUnit.SECONDS.toNanos(10), () -> false)) {
                    // a wait that timed out: the producer is slow, go on waiting (the test's timeout bounds it)
                }
                MemorySegment m = consumer.poll();
                if (m == null) {
                    i--; // padding only
                    continue;
                }
                s += m.get(I64, 0);
                consumer.release();
            }
            return s;
        });
        long want = 0;
        for (int i = 0; i < n; i++) {
            MemorySegment room = producer.claim(8 + (i % 300), TimeUnit.SECONDS.toNanos(10), () -> false);
            assertThat(room).isNotNull();
            room.set(I64, 0, i * 7L);
            want += i * 7L;
            producer.publish();
        }
        assertThat(sum.get(30, TimeUnit.SECONDS)).isEqualTo(want);

        // a consumer asleep on an empty ring returns once the file is closed (by the other side)
        CompletableFuture<Boolean> waiting = CompletableFuture.supplyAsync(() -> consumer.await(TimeUnit.SECONDS.toNanos(30), p[1]::closed));
        p[0].close();
        assertThat(waiting.get(10, TimeUnit.SECONDS)).as("nothing was published").isFalse();
        assertThat(p[1].closed()).isTrue();
    }

    @Test
    void positionsOrRecordsThatCannotBeRightAreRefused() throws IOException {
        RingFile[] p = pair();
        ShmRing producer = p[0].requests();
        ShmRing consumer = p[1].requests();
        MemorySegment room = producer.claim(16);
        producer.publish();
        // the record header sits 8 bytes before the payload: a length that runs past what was published
        MemorySegment map = p[0].mapping();
        long data = RingFile.HEADER_BYTES;
        map.set(ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN), data, 1 << 20);
        assertThatThrownBy(consumer::poll).isInstanceOf(ShmRing.RingCorruptException.class).hasMessageContaining("bytes at 0");
        map.set(ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN), data, 16);
        map.set(ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN), data + 4, 99);
        assertThatThrownBy(consumer::poll).isInstanceOf(ShmRing.RingCorruptException.class).hasMessageContaining("type 99");
        // a tail beyond the capacity
        map.set(I64, 256 + 64, 3L * CAPACITY);
        assertThatThrownBy(consumer::poll).isInstanceOf(ShmRing.RingCorruptException.class).hasMessageContaining("positions");
        assertThat(room.byteSize()).isEqualTo(16);
    }

    @Test
    void aFileIsServedOnlyUnderItsOwnNameAndToken() throws IOException {
        RingFile a = RingFile.create(dir, CAPACITY, 0);
        assertThat(a.name()).matches("epserve-ring-[0-9a-f]{32}");
        assertThat(Files.getPosixFilePermissions(dir.resolve(a.name()))).extracting(Object::toString)
                .containsExactlyInAnyOrder("OWNER_READ", "OWNER_WRITE");
        byte[] wrong = a.token();
        wrong[0] ^= 1;
        assertThatThrownBy(() -> RingFile.open(dir, a.name(), wrong, 0)).isInstanceOf(IOException.class).hasMessageContaining("token");
        assertThatThrownBy(() -> RingFile.open(dir, "../" + a.name(), a.token(), 0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("not a ring file name");
        assertThatThrownBy(() -> RingFile.open(dir, "epserve-ring-" + "0".repeat(32), a.token(), 0)).isInstanceOf(NoSuchFileException.class);
        Path link = dir.resolve("epserve-ring-" + "1".repeat(32));
        Files.createSymbolicLink(link, dir.resolve(a.name()));
        assertThatThrownBy(() -> RingFile.open(dir, link.getFileName().toString(), a.token(), 0)).isInstanceOf(IOException.class)
                .hasMessageContaining("not a regular file");
        Path small = dir.resolve("epserve-ring-" + "2".repeat(32));
        Files.write(small, new byte[100]);
        assertThatThrownBy(() -> RingFile.open(dir, small.getFileName().toString(), a.token(), 0)).isInstanceOf(IOException.class)
                .hasMessageContaining("not a ring file");
        assertThat(RingFile.open(dir, a.name(), a.token(), 0).name()).isEqualTo(a.name());
        a.unlink();
        assertThat(dir.resolve(a.name())).doesNotExist();
    }
}
