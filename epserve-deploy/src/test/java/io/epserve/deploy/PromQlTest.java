package io.epserve.deploy;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class PromQlTest {
    @Test
    void namesInsideFunctionsAggregationsAndBinaryOperators() {
        assertThat(PromQl.metricNames("histogram_quantile(0.99, sum by (le) (rate(epserve_ttft_seconds_bucket{instance=~\"$instance\"}"
                + "[$__rate_interval])))")).containsExactly("epserve_ttft_seconds_bucket");
        assertThat(PromQl.metricNames("sum by (worker) (rate(a_total[5m])) / on (worker) group_left(x) sum by (worker) (rate(b_total[5m]))"))
                .containsExactly("a_total", "b_total");
        assertThat(PromQl.metricNames("min(x) < 0.5 and on (job, instance) sum(rate(y[5m] offset 1h)) > 1e3 or vector(0)"))
                .containsExactly("x", "y");
    }

    @Test
    void labelsStringsKeywordsAndVariablesAreNotNames() {
        assertThat(PromQl.metricNames("count(up{job=\"a b\", instance=~'${instance}'} == bool 0) without (pod)"))
                .containsExactly("up");
        assertThat(PromQl.metricNames("sum(rate(m[$__rate_interval])) * $factor")).containsExactly("m");
        assertThat(PromQl.metricNames("time() - process_start_time_seconds")).containsExactly("process_start_time_seconds");
    }

    @Test
    void templateQueries() {
        assertThat(PromQl.templateQueryNames("label_values(epserve_ready, instance)")).containsExactly("epserve_ready");
        assertThat(PromQl.templateQueryNames("label_values(instance)")).isEmpty();
        assertThat(PromQl.templateQueryNames("query_result(max by (worker) (epserve_worker_up))")).containsExactly("epserve_worker_up");
    }

    @Test
    void scrapeNamesIncludeHistogramSeries() {
        String text = """
                # HELP a_seconds A.
                # TYPE a_seconds histogram
                a_seconds_bucket{le="0.1"} 1
                a_seconds_count 1
                a_seconds_sum 0.05
                b_total{x="y"} 3
                """;
        assertThat(MetricsScrape.sampleNames(text)).containsExactly("a_seconds_bucket", "a_seconds_count", "a_seconds_sum", "b_total");
        assertThat(MetricsScrape.sum(text + "b_total{x=\"z\"} 4 1700000000\nb_totals 100\n", "b_total")).isEqualTo(7);
        assertThat(MetricsScrape.sum(text, "a_seconds_count")).isEqualTo(1);
    }
}
