package io.epserve.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.tensor.KernelPool;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The transport-floor harness: real worker processes, the same numbers as in process, figures printed. */
class EpTransportFloorTest {
    static final String[] TINY = {"--hidden", "64", "--intermediate", "96", "--layers", "2", "--experts", "4", "--vocab", "128"};

    @Test
    void twoWorkerProcessesComputeWhatTheProcessComputesAndTheRunPrintsItsFigures() throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        String[] args = concat(TINY, "--tokens", "6", "--rounds", "2", "--warmup", "1");
        int code = EpTransportFloor.run(args, new PrintStream(bytes, true, StandardCharsets.UTF_8));
        String out = bytes.toString(StandardCharsets.UTF_8);
        assertThat(code).as(out).isZero();
        assertThat(out).contains("hidden 64, intermediate 96, 2 layers, 4 experts (2 per token), vocab 128; 6 tokens a round, "
                + "2 rounds each after 1 warm-up");
        for (int r = 1; r <= 2; r++) {
            assertThat(out).containsPattern("round " + r + ": in process [0-9.]+ tokens/s, 2 workers over plain TCP [0-9.]+ tokens/s "
                    + "\\([0-9.]+\\); per call [0-9]+ µs computing, -?[0-9]+ µs on the way");
        }
        assertThat(out).containsPattern("median: in process [0-9.]+ tokens/s, 2 workers over plain TCP [0-9.]+ tokens/s; ratio [0-9.]+");
        assertThat(out).contains("outputs: equal in every round");
    }

    @Test
    void theChecksumSeesADifferentExpertOutput() throws Exception {
        EpTransportFloor.Shape s = EpTransportFloor.Shape.from(Map.of("hidden", "64", "intermediate", "96", "layers", "2",
                "experts", "4", "vocab", "128"));
        try (Arena arena = Arena.ofConfined()) {
            EpTransportFloor.Weights w = new EpTransportFloor.Weights(s, arena, true, true);
            KernelPool pool = KernelPool.common();
            EpTransportFloor.Experts exact = EpTransportFloor.inProcess(s, w, pool);
            EpTransportFloor.Experts oneBitOff = (layer, e0, e1, x, y0, y1) -> {
                exact.compute(layer, e0, e1, x, y0, y1);
                y1[3] = Math.nextUp(y1[3]);
            };
            EpTransportFloor.Experts swapped = (layer, e0, e1, x, y0, y1) -> exact.compute(layer, e1, e0, x, y1, y0);
            EpTransportFloor.Experts secondTwice = (layer, e0, e1, x, y0, y1) -> exact.compute(layer, e1, e1, x, y0, y1);
            long a = EpTransportFloor.decode(s, w, exact, 3, pool).checksum();
            assertThat(EpTransportFloor.decode(s, w, exact, 3, pool).checksum()).isEqualTo(a);
            assertThat(EpTransportFloor.decode(s, w, swapped, 3, pool).checksum()).as("same work, other order").isEqualTo(a);
            assertThat(EpTransportFloor.decode(s, w, oneBitOff, 3, pool).checksum()).isNotEqualTo(a);
            assertThat(EpTransportFloor.decode(s, w, secondTwice, 3, pool).checksum()).as("experts hold different weights")
                    .isNotEqualTo(a);
        }
    }

    @Test
    void badOptionsAreNamed() {
        assertThatThrownBy(() -> EpTransportFloor.run(new String[] {"--tokens", "x"}, System.out))
                .hasMessageContaining("--tokens must be an integer, got 'x'");
        assertThatThrownBy(() -> EpTransportFloor.run(new String[] {"--experts", "1"}, System.out))
                .hasMessageContaining("--experts >= 2");
        assertThatThrownBy(() -> EpTransportFloor.run(new String[] {"--rounds"}, System.out))
                .hasMessageContaining("expected --name value pairs");
    }

    private static String[] concat(String[] a, String... b) {
        String[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }
}
