package io.epserve.model;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.format.CheckpointException;
import java.util.HashSet;
import java.util.Set;

/** Typed reads of config.json with errors that name the key. */
record ConfigReader(JsonNode c) {

    boolean has(String key) {
        return c.hasNonNull(key);
    }

    int positive(String key) {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            throw new CheckpointException("config.json: '" + key + "' is missing");
        }
        if (!n.canConvertToInt() || !n.isIntegralNumber() || n.asInt() < 1) {
            throw new CheckpointException("config.json: '" + key + "' must be a positive integer, is " + n);
        }
        return n.asInt();
    }

    int optInt(String key, int def) {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            return def;
        }
        if (!n.isIntegralNumber()) {
            throw new CheckpointException("config.json: '" + key + "' must be an integer, is " + n);
        }
        return n.asInt();
    }

    double optDouble(String key, double def) {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            return def;
        }
        if (!n.isNumber()) {
            throw new CheckpointException("config.json: '" + key + "' must be a number, is " + n);
        }
        return n.asDouble();
    }

    boolean optBool(String key, boolean def) {
        JsonNode n = c.get(key);
        if (n == null || n.isNull()) {
            return def;
        }
        if (!n.isBoolean()) {
            throw new CheckpointException("config.json: '" + key + "' must be true or false, is " + n);
        }
        return n.asBoolean();
    }

    String optText(String key, String def) {
        JsonNode n = c.get(key);
        return n == null || n.isNull() ? def : n.asText();
    }

    Set<Integer> intSet(String key) {
        Set<Integer> s = new HashSet<>();
        JsonNode n = c.get(key);
        if (n != null && n.isArray()) {
            n.forEach(x -> s.add(x.asInt()));
        }
        return s;
    }

    JsonNode node(String key) {
        return c.get(key);
    }
}
