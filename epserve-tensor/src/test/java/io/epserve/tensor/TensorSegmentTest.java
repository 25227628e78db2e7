package io.epserve.tensor;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Tensors over a mapped file are viewed through the same segment class as arena memory (the
 * kernels' vector loads stay monomorphic), with the same memory, read-only mode and lifetime.
 */
class TensorSegmentTest {

    @Test
    void mappedDataBecomesAPlainNativeViewOfTheSameBytes(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("w.bin");
        float[] values = {1.5f, -2f, 3.25f, 4f, 0.5f, -0.75f};
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(4L * values.length);
            for (int i = 0; i < values.length; i++) {
                src.set(Tensor.F32_LE, 4L * i, values[i]);
            }
            Files.write(f, src.toArray(ValueLayout.JAVA_BYTE));
        }
        Arena arena = Arena.ofShared();
        Tensor t;
        MemorySegment mapped;
        try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
            mapped = ch.map(FileChannel.MapMode.READ_ONLY, 0, 4L * values.length, arena);
            t = new Tensor("w", mapped, DType.F32, new long[] {2, 3});
        }
        assertThat(mapped.isMapped()).isTrue();
        assertThat(t.data().isMapped()).isFalse();
        assertThat(t.data().isReadOnly()).isTrue();
        assertThat(t.data().address()).isEqualTo(mapped.address());
        assertThat(t.data().getClass()).isEqualTo(Arena.ofAuto().allocate(8).getClass());
        assertThat(t.select(1).data().isMapped()).isFalse();
        float[] y = new float[2];
        Kernels.matmul(new float[] {1, 1, 1}, 0, 1, t, y, 0);
        assertThat(y).containsExactly(2.75f, 3.75f);
        arena.close();
        // the view has the mapping's lifetime: closed with it, never a read of unmapped memory
        assertThatThrownBy(() -> t.getFloat(0)).isInstanceOf(IllegalStateException.class);
    }

    @Test
    void arenaAndHeapDataAreKept() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(8);
            assertThat(new Tensor("a", s, DType.F32, new long[] {2}).data()).isSameAs(s);
        }
        MemorySegment heap = MemorySegment.ofArray(new float[2]);
        assertThat(new Tensor("h", heap, DType.F32, new long[] {2}).data()).isSameAs(heap);
    }
}
