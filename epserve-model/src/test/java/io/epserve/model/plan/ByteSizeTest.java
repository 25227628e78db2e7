package io.epserve.model.plan;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class ByteSizeTest {
    @Test
    void parsesTheUsualForms() {
        assertThat(ByteSize.parse("1073741824")).isEqualTo(1L << 30);
        assertThat(ByteSize.parse("512MiB")).isEqualTo(512L << 20);
        assertThat(ByteSize.parse("24GiB")).isEqualTo(24L << 30);
        assertThat(ByteSize.parse("24gib")).isEqualTo(24L << 30);
        assertThat(ByteSize.parse("80GB")).isEqualTo(80_000_000_000L);
        assertThat(ByteSize.parse("1.5 TiB")).isEqualTo(3L << 39);
        assertThat(ByteSize.parse("2TB")).isEqualTo(2_000_000_000_000L);
        assertThat(ByteSize.parse("16g")).isEqualTo(16L << 30);
        assertThat(ByteSize.parse("100B")).isEqualTo(100);
        assertThat(ByteSize.parse("4KB")).isEqualTo(4000);
        assertThat(ByteSize.parse("4KiB")).isEqualTo(4096);
    }

    @Test
    void refusesWhatItCannotRead() {
        for (String bad : new String[] {"", "GiB", "-1GiB", "24 parsecs", "1e9", "0x10", "1,5GiB", "99999999999TiB"}) {
            assertThatThrownBy(() -> ByteSize.parse(bad)).as(bad).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("'" + bad + "'");
        }
    }

    @Test
    void formats() {
        assertThat(ByteSize.format(512)).isEqualTo("512 B");
        assertThat(ByteSize.format(336L << 20)).isEqualTo("336.00 MiB");
        assertThat(ByteSize.format(24L << 30)).isEqualTo("24.00 GiB");
        assertThat(ByteSize.count(46_702_792_704L)).isEqualTo("46.70B");
        assertThat(ByteSize.count(131_072_000L)).isEqualTo("131.07M");
    }
}
