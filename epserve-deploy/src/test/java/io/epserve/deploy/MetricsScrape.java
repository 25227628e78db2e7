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

    /** The sum of every sample of the series {@code name} (all label sets). */
    static double sum(String exposition, String name) {
        double total = 0;
        for (String line : exposition.split("\n")) {
            if (line.startsWith(name + "{") || line.startsWith(name + " ")) {
                String rest = line.indexOf('}') >= 0 ? line.substring(line.lastIndexOf('}') + 1) : line.substring(name.length());
                total += Double.parseDouble(rest.trim().split(" ")[0]); // value, then an optional timestamp
            }
        }
        return total;
    }
}
