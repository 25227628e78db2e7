package io.epserve.operator.status;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.Map;
import org.junit.jupiter.api.Test;

class MetricsTextTest {

    @Test
    void readsNamesLabelsAndValues() {
        MetricsText m = MetricsText.parse("""
                # HELP epserve_placement_balancedness Mean over max worker load
                # TYPE epserve_placement_balancedness gauge
                epserve_placement_balancedness{layer="0"} 0.91
                epserve_placement_balancedness{layer="1"} 0.62 1700000000000
                epserve_placement_epoch 12
                epserve_note{text="a \\"quoted\\", comma"} 1
                epserve_ttft_seconds_bucket{le="+Inf"} +Inf
                epserve_nan NaN
                """);
        assertThat(m.named("epserve_placement_balancedness")).containsExactly(
                new MetricsText.Sample("epserve_placement_balancedness", Map.of("layer", "0"), 0.91),
                new MetricsText.Sample("epserve_placement_balancedness", Map.of("layer", "1"), 0.62));
        assertThat(m.named("epserve_placement_epoch").getFirst().value()).isEqualTo(12.0);
        assertThat(m.named("epserve_note").getFirst().labels()).containsEntry("text", "a \"quoted\", comma");
        assertThat(m.named("epserve_ttft_seconds_bucket").getFirst().value()).isEqualTo(Double.POSITIVE_INFINITY);
        assertThat(m.named("epserve_nan").getFirst().value()).isNaN();
    }

    @Test
    void skipsLinesThatDoNotParse() {
        MetricsText m = MetricsText.parse("""
                good 1
                bad{layer="0" 2
                alsobad notanumber
                {nolabelname} 3
                good 4
                """);
        assertThat(m.samples()).extracting(MetricsText.Sample::value).containsExactly(1.0, 4.0);
    }
}
