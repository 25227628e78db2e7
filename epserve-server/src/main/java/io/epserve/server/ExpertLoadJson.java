package io.epserve.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Locale;

/**
 * The JSON of an {@link ExpertLoad} ({@code GET /v1/epserve/load}, load files of
 * {@code epserve plan --load} and {@code bench balance --load}) and of a live placement
 * ({@code GET /v1/epserve/placement}):
 * <pre>
 *   {"steps": S, "layers": [{"layer": 0, "tokens": [n_0, …, n_{E-1}]}, …]}
 * </pre>
 * ({@code steps}: how many steps the counts cover; optional, absent when unknown.)
 */
public final class ExpertLoadJson {
    private ExpertLoadJson() {}

    public static ObjectNode toJson(ObjectMapper json, ExpertLoad load) {
        ObjectNode root = json.createObjectNode();
        if (load.steps() > 0) {
            root.put("steps", load.steps());
        }
        ArrayNode layers = root.putArray("layers");
        for (int l = 0; l < load.layers(); l++) {
            if (load.has(l)) {
                ObjectNode o = layers.addObject();
                o.put("layer", l);
                ArrayNode t = o.putArray("tokens");
                for (long n : load.layer(l)) {
                    t.add(n);
                }
            }
        }
        return root;
    }

    /**
     * Parses a load for a model of {@code experts} experts per layer; throws
     * IllegalArgumentException naming what is wrong (layer index, token count, shape).
     */
    public static ExpertLoad parse(JsonNode root, int experts) {
        JsonNode layers = root == null ? null : root.get("layers");
        if (layers == null || !layers.isArray()) {
            throw new IllegalArgumentException("a load is {\"layers\": [{\"layer\": L, \"tokens\": [...]}, ...]}: no \"layers\" array");
        }
        JsonNode stepsNode = root.get("steps");
        if (stepsNode != null && (!stepsNode.isIntegralNumber() || stepsNode.asLong() < 0)) {
            throw new IllegalArgumentException("load: \"steps\" must be an integer >= 0 (the steps the counts cover), got " + stepsNode);
        }
        long steps = stepsNode == null ? 0 : stepsNode.asLong();
        int max = -1;
        for (JsonNode l : layers) {
            JsonNode idx = l.get("layer");
            if (idx == null || !idx.canConvertToInt() || idx.asInt() < 0 || idx.asInt() > 1 << 16) {
                throw new IllegalArgumentException("load: \"layer\" must be a layer index >= 0, got " + idx);
            }
            max = Math.max(max, idx.asInt());
        }
        long[][] tokens = new long[max + 1][];
        for (JsonNode l : layers) {
            int layer = l.get("layer").asInt();
            JsonNode t = l.get("tokens");
            if (t == null || !t.isArray()) {
                throw new IllegalArgumentException("load: layer " + layer + " has no \"tokens\" array");
            }
            if (t.size() != experts) {
                throw new IllegalArgumentException("load: layer " + layer + " has " + t.size() + " token counts, the model has "
                        + experts + " experts per layer");
            }
            if (tokens[layer] != null) {
                throw new IllegalArgumentException("load: layer " + layer + " is listed twice");
            }
            tokens[layer] = new long[experts];
            for (int e = 0; e < experts; e++) {
                JsonNode n = t.get(e);
                if (!n.isIntegralNumber() || n.asLong() < 0) {
                    throw new IllegalArgumentException("load: layer " + layer + ", expert " + e + ": token count must be an integer >= 0, got " + n);
                }
                tokens[layer][e] = n.asLong();
            }
        }
        return ExpertLoad.of(experts, tokens, steps);
    }

    /** Reads a load file; IOException for an unreadable file, IllegalArgumentException for bad content. */
    public static ExpertLoad read(ObjectMapper json, Path file, int experts) throws IOException {
        return parse(json.readTree(file.toFile()), experts);
    }

    /** The live placement: epoch, policy, workers, and per sparse layer each expert's replicas (worker indices, primary first). */
    public static ObjectNode placementJson(ObjectMapper json, ExpertPlacement p, ExpertLoad window) {
        ObjectNode root = json.createObjectNode();
        root.put("epoch", p.epoch());
        root.put("policy", p.policy().name().toLowerCase(Locale.ROOT));
        ArrayNode ws = root.putArray("workers");
        p.workers().forEach(ws::add);
        ArrayNode layers = root.putArray("layers");
        double[] b = window == null ? null : p.balancedness(window);
        int sparse = 0;
        for (int l = 0; l < p.layers(); l++) {
            if (!p.isSparse(l)) {
                continue;
            }
            ObjectNode o = layers.addObject();
            o.put("layer", l);
            if (b != null) {
                o.put("balancedness", b[sparse]);
            }
            sparse++;
            ArrayNode r = o.putArray("replicas");
            for (int e = 0; e < p.numExperts(); e++) {
                ArrayNode one = r.addArray();
                for (int w : p.replicasOf(l, e)) {
                    one.add(w);
                }
            }
        }
        return root;
    }
}
