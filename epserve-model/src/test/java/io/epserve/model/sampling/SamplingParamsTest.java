package io.epserve.model.sampling;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class SamplingParamsTest {
    @Test
    void validValues() {
        SamplingParams p = new SamplingParams(0.7, 50, 0.9, 0.05, 42);
        assertThat(p.isGreedy()).isFalse();
        assertThat(p.withSeed(7).seed()).isEqualTo(7);
        assertThat(SamplingParams.GREEDY.isGreedy()).isTrue();
        assertThat(new SamplingParams(1, -1, 1, 0, 0).topK()).isZero(); // vLLM's "off"
        assertThat(SamplingParams.temperature(0.5, 3)).isEqualTo(new SamplingParams(0.5, 0, 1.0, 0.0, 3));
    }

    @Test
    void outOfRangeValuesNameTheField() {
        assertThatThrownBy(() -> new SamplingParams(-0.1, 0, 1, 0, 0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("temperature").hasMessageContaining("-0.1");
        assertThatThrownBy(() -> new SamplingParams(Double.NaN, 0, 1, 0, 0)).hasMessageContaining("temperature");
        assertThatThrownBy(() -> new SamplingParams(Double.POSITIVE_INFINITY, 0, 1, 0, 0)).hasMessageContaining("temperature");
        assertThatThrownBy(() -> new SamplingParams(1, -2, 1, 0, 0)).hasMessageContaining("topK").hasMessageContaining("-2");
        assertThatThrownBy(() -> new SamplingParams(1, 0, 0, 0, 0)).hasMessageContaining("topP");
        assertThatThrownBy(() -> new SamplingParams(1, 0, 1.5, 0, 0)).hasMessageContaining("topP").hasMessageContaining("1.5");
        assertThatThrownBy(() -> new SamplingParams(1, 0, Double.NaN, 0, 0)).hasMessageContaining("topP");
        assertThatThrownBy(() -> new SamplingParams(1, 0, 1, -0.5, 0)).hasMessageContaining("minP");
        assertThatThrownBy(() -> new SamplingParams(1, 0, 1, 1.01, 0)).hasMessageContaining("minP");
    }
}
