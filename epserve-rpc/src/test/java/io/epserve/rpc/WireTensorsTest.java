package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.rpc.v1.WireDType;
import java.util.Random;
import org.junit.jupiter.api.Test;

class WireTensorsTest {
    @Test
    void f32IsExactAndLittleEndian() {
        float[] x = {1f, -2.5f, Float.MIN_VALUE, 3.4e38f, -0f};
        var bytes = WireTensors.encode(x, 0, x.length, WireDType.WIRE_DTYPE_F32);
        assertThat(bytes.size()).isEqualTo(20);
        assertThat(bytes.byteAt(3)).isEqualTo((byte) 0x3F); // 1.0f = 0x3F800000, high byte last
        float[] back = new float[x.length];
        WireTensors.decode(bytes, WireDType.WIRE_DTYPE_F32, back, x.length);
        for (int i = 0; i < x.length; i++) {
            assertThat(Float.floatToRawIntBits(back[i])).isEqualTo(Float.floatToRawIntBits(x[i]));
        }
    }

    @Test
    void bf16HalvesTheBytesAndKeepsEightSignificantBits() {
        Random r = new Random(3);
        float[] x = new float[1001];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(7) - 3));
        }
        var bytes = WireTensors.encode(x, 0, x.length, WireDType.WIRE_DTYPE_BF16);
        assertThat(bytes.size()).isEqualTo(2 * x.length);
        float[] back = new float[x.length];
        WireTensors.decode(bytes, WireDType.WIRE_DTYPE_BF16, back, x.length);
        for (int i = 0; i < x.length; i++) {
            assertThat((double) Math.abs(back[i] - x[i])).isLessThanOrEqualTo(Math.abs(x[i]) * 0x1p-8);
        }
    }

    @Test
    void offsetEncodesASlice() {
        float[] x = {9f, 1f, 2f};
        float[] back = new float[2];
        WireTensors.decode(WireTensors.encode(x, 1, 2, WireDType.WIRE_DTYPE_F32), WireDType.WIRE_DTYPE_F32, back, 2);
        assertThat(back).containsExactly(1f, 2f);
    }

    @Test
    void hostPortParses() {
        assertThat(HostPort.parse("127.0.0.1:7071", "--listen")).isEqualTo(new HostPort("127.0.0.1", 7071));
        assertThat(HostPort.parse("[::1]:0", "--listen").toString()).isEqualTo("[::1]:0");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> HostPort.parse("7071", "--listen"))
                .hasMessageContaining("--listen must be HOST:PORT");
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> HostPort.parse("h:99999", "--listen"))
                .hasMessageContaining("outside");
    }
}
