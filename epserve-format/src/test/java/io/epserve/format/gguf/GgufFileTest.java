package io.epserve.format.gguf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Header, metadata, tensor directory and dequantized rows of every fixture file, against llama.cpp's values. */
class GgufFileTest {
    static List<String> files() {
        return GgufFixtures.files();
    }

    @ParameterizedTest
    @MethodSource("files")
    void headerAndDirectoryMatchReference(String file) {
        JsonNode ref = GgufFixtures.reference().get("files").get(file);
        try (GgufFile g = GgufFile.open(GgufFixtures.dir().resolve(file))) {
            assertEquals(ref.get("gguf_version").asInt(), g.version());
            assertEquals(ref.get("alignment").asInt(), g.alignment());
            assertEquals(ref.get("data_section_offset").asLong(), g.dataStart());
            assertEquals(ref.get("kv_count").asInt(), g.metadata().values().size());
            assertEquals(ref.get("tensor_count").asInt(), g.tensors().size());
            List<String> keys = new ArrayList<>();
            ref.get("metadata").fieldNames().forEachRemaining(keys::add);
            assertEquals(keys, new ArrayList<>(g.metadata().values().keySet()), "metadata keys in file order");
            for (Iterator<Map.Entry<String, JsonNode>> it = ref.get("metadata").fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                String key = e.getKey();
                JsonNode m = e.getValue();
                assertEquals(m.get("type").asText(), g.metadata().type(key).name(), key);
                Object v = g.metadata().values().get(key);
                if (m.get("type").asText().equals("ARRAY")) {
                    GgufMetadata.Array a = (GgufMetadata.Array) v;
                    assertEquals(m.get("item_type").asText(), a.itemType().name(), key);
                    assertEquals(m.get("length").asInt(), a.size(), key);
                    JsonNode head = m.get("head");
                    for (int i = 0; i < head.size(); i++) {
                        assertSame(head.get(i), a.items().get(i), key + "[" + i + "]");
                    }
                    JsonNode tail = m.get("tail");
                    for (int i = 0; i < tail.size(); i++) {
                        assertSame(tail.get(i), a.items().get(a.size() - tail.size() + i), key + " tail[" + i + "]");
                    }
                } else {
                    assertSame(m.get("value"), v, key);
                }
            }
            List<GgufFile.TensorInfo> infos = new ArrayList<>(g.tensors().values());
            JsonNode tensors = ref.get("tensors");
            for (int i = 0; i < tensors.size(); i++) {
                JsonNode t = tensors.get(i);
                GgufFile.TensorInfo info = infos.get(i);
                assertEquals(t.get("name").asText(), info.name());
                assertEquals(t.get("type").asText(), info.type().name(), info.name());
                long[] ne = new long[t.get("ne").size()];
                for (int d = 0; d < ne.length; d++) {
                    ne[d] = t.get("ne").get(d).asLong();
                }
                assertArrayEquals(ne, info.ne(), info.name());
                assertEquals(t.get("offset").asLong(), info.offset(), info.name());
                assertEquals(t.get("n_bytes").asLong(), info.bytes(), info.name());
            }
        }
    }

    /** The dequantization checks below cover all seven types the fixtures hold. */
    @Test
    void theFixturesHoldEveryTypeEpserveReads() {
        Set<String> types = new TreeSet<>();
        GgufFixtures.reference().get("files").forEach(f -> f.get("dequant").forEach(d -> types.add(d.get("type").asText())));
        assertEquals(new TreeSet<>(List.of("BF16", "F16", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0")), types);
    }

    private static void assertSame(JsonNode expected, Object actual, String what) {
        switch (actual) {
            case Long l -> assertEquals(expected.asLong(), l, what);
            case Double d -> assertEquals(expected.asDouble(), d, 0.0, what);
            case Boolean b -> assertEquals(expected.asBoolean(), b, what);
            case String s -> assertEquals(expected.asText(), s, what);
            default -> throw new AssertionError(what + ": unexpected " + actual);
        }
    }

    /** Every type the fixtures hold is checked: exactly for F16/BF16/Q8_0/Q4_0 (and F32), within 1 ulp for the K-quants. */
    @ParameterizedTest
    @MethodSource("files")
    void dequantizedRowsMatchReference(String file) {
        JsonNode ref = GgufFixtures.reference().get("files").get(file);
        Set<String> seen = new TreeSet<>();
        try (GgufFile g = GgufFile.open(GgufFixtures.dir().resolve(file))) {
            for (Iterator<Map.Entry<String, JsonNode>> it = ref.get("dequant").fields(); it.hasNext(); ) {
                Map.Entry<String, JsonNode> e = it.next();
                GgmlType type = GgmlType.valueOf(e.getValue().get("type").asText());
                seen.add(type.name());
                JsonNode rows = e.getValue().get("rows");
                int ne0 = rows.get(0).size();
                float[] got = g.dequantize(e.getKey(), 2 * ne0);
                boolean kQuant = type == GgmlType.Q4_K || type == GgmlType.Q5_K || type == GgmlType.Q6_K;
                for (int r = 0; r < 2; r++) {
                    for (int i = 0; i < ne0; i++) {
                        float want = (float) rows.get(r).get(i).asDouble();
                        float have = got[r * ne0 + i];
                        String what = file + " " + e.getKey() + " row " + r + " col " + i;
                        if (kQuant) {
                            assertTrue(Math.abs(have - want) <= Math.ulp(want), what + ": " + have + " vs " + want);
                        } else {
                            assertEquals(Float.floatToIntBits(want), Float.floatToIntBits(have), what + ": " + have + " vs " + want);
                        }
                    }
                }
            }
        }
        assertTrue(!seen.isEmpty());
    }
}
