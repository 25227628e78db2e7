package io.epserve.server;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class StopStringsTest {
    /** Feeds the pieces; returns what was released, with "|" where the matcher said stop. */
    private static String run(List<String> stops, String... pieces) {
        StopStrings s = new StopStrings(stops);
        StringBuilder out = new StringBuilder();
        for (String p : pieces) {
            out.append(s.push(p));
            if (s.matched()) {
                return out.append('|').toString();
            }
        }
        return out.append(s.flush()).toString();
    }

    @Test
    void noStopsPassesEverythingAtOnce() {
        StopStrings s = new StopStrings(List.of());
        assertThat(s.push("abc")).isEqualTo("abc");
        assertThat(s.flush()).isEmpty();
    }

    @Test
    void stopInsideOnePieceCutsBeforeIt() {
        assertThat(run(List.of("STOP"), "ab", "cSTOPde", "fg")).isEqualTo("abc|");
    }

    @Test
    void stopAcrossTokenBoundaries() {
        assertThat(run(List.of("\n\n"), "one", "\n", "\n", "two")).isEqualTo("one|");
        assertThat(run(List.of("END"), "x", "E", "N", "D", "y")).isEqualTo("x|");
    }

    @Test
    void heldPrefixIsReleasedWhenItDoesNotComplete() {
        StopStrings s = new StopStrings(List.of("END"));
        assertThat(s.push("aE")).isEqualTo("a");
        assertThat(s.push("N")).isEmpty();
        assertThat(s.push("x")).isEqualTo("ENx");
        assertThat(s.matched()).isFalse();
        assertThat(s.push("EN")).isEmpty();
        assertThat(s.flush()).isEqualTo("EN");
    }

    @Test
    void overlappingCandidatesHoldTheLongestPrefix() {
        // "abab" ends with "ab" and "abab"'s... the longest tail that starts "ababc" is "abab"
        assertThat(run(List.of("ababc"), "ab", "ab", "abc", "z")).isEqualTo("ab|");
        assertThat(run(List.of("aab"), "a", "a", "a", "b")).isEqualTo("a|");
    }

    @Test
    void earliestOfSeveralStopsWins() {
        assertThat(run(List.of("world", "lo"), "hello world")).isEqualTo("hel|");
        assertThat(run(List.of("xyz", "b"), "a", "bxyz")).isEqualTo("a|");
    }

    @Test
    void nothingAfterAMatch() {
        StopStrings s = new StopStrings(List.of("."));
        assertThat(s.push("a.b")).isEqualTo("a");
        assertThat(s.push("more")).isEmpty();
        assertThat(s.flush()).isEmpty();
    }

    @Test
    void releasedTextPlusHeldTextIsTheInputWhenNoStopMatches() {
        Random r = new Random(1);
        for (int round = 0; round < 200; round++) {
            StringBuilder in = new StringBuilder();
            StringBuilder out = new StringBuilder();
            StopStrings s = new StopStrings(List.of("abcx", "bbq"));
            for (int i = 0; i < 30; i++) {
                String piece = String.valueOf("abc".charAt(r.nextInt(3))).repeat(1 + r.nextInt(2));
                in.append(piece);
                out.append(s.push(piece));
            }
            out.append(s.flush());
            assertThat(out.toString()).isEqualTo(in.toString());
        }
    }
}
