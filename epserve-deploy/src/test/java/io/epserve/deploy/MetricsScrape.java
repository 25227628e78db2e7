package io.epserve.deploy;

import java.util.Set;
import java.util.TreeSet;

/** The series names in a Prometheus text exposition (what a scrape stores: {@code _bucket}, {@code _count} and all). */
final class MetricsScrape {
    private MetricsScrape() {}

    static Set<String> sampleNames(String exposition) {
        Set<String> names = new TreeSet<>();
        for (String line : exposition.split("\n")) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            int end = 0;
            while (end < line.length() && line.charAt(end) != '{' && line.charAt(end) != ' ') {
                end++;
            }
            names.add(line.substring(0, end));
        }
        return names;
    }
}
