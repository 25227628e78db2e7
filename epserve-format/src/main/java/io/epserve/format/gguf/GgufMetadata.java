package io.epserve.format.gguf;

import io.epserve.format.CheckpointException;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The key-value metadata of a GGUF file, in file order, with typed reads whose errors name the
 * file and the key. Integers of every width are held as {@code Long}, floats as {@code Double}
 * (FLOAT32 widened exactly), strings as {@code String}, arrays as {@link Array}.
 */
public final class GgufMetadata {

    /** GGUF's value types, by the id the file stores ({@code gguf_type}), with their byte width. */
    public enum ValueType {
        UINT8(0, 1), INT8(1, 1), UINT16(2, 2), INT16(3, 2), UINT32(4, 4), INT32(5, 4), FLOAT32(6, 4), BOOL(7, 1),
        STRING(8, 0), ARRAY(9, 0), UINT64(10, 8), INT64(11, 8), FLOAT64(12, 8);

        private final int id;
        private final int bytes;

        ValueType(int id, int bytes) {
            this.id = id;
            this.bytes = bytes;
        }

        public int id() {
            return id;
        }

        /** Bytes of one value; 0 for the variable-length STRING and ARRAY. */
        public int bytes() {
            return bytes;
        }

        static ValueType byId(int id) {
            for (ValueType t : values()) {
                if (t.id == id) {
                    return t;
                }
            }
            return null;
        }
    }

    /** An array value: its item type and items (Long, Double, Boolean or String). */
    public record Array(ValueType itemType, List<Object> items) {
        public int size() {
            return items.size();
        }
    }

    private final String file;
    private final Map<String, Object> values;
    private final Map<String, ValueType> types;

    GgufMetadata(String file, Map<String, Object> values, Map<String, ValueType> types) {
        this.file = file;
        this.values = Collections.unmodifiableMap(values);
        this.types = Collections.unmodifiableMap(types);
    }

    /** All pairs, in file order. */
    public Map<String, Object> values() {
        return values;
    }

    /** The stored type of a key, or null when absent. */
    public ValueType type(String key) {
        return types.get(key);
    }

    public boolean has(String key) {
        return values.containsKey(key);
    }

    private CheckpointException missing(String key) {
        return new CheckpointException(file + ": metadata key '" + key + "' is missing");
    }

    private CheckpointException wrongType(String key, String expected) {
        return new CheckpointException(file + ": metadata key '" + key + "' is " + types.get(key) + ", expected " + expected);
    }

    public long requireLong(String key) {
        Object v = values.get(key);
        if (v == null) {
            throw missing(key);
        }
        if (!(v instanceof Long l)) {
            throw wrongType(key, "an integer");
        }
        return l;
    }

    /** An integer that must fit an int and be at least {@code min}. */
    public int requireInt(String key, int min) {
        long v = requireLong(key);
        if (v < min || v > Integer.MAX_VALUE) {
            throw new CheckpointException(file + ": metadata key '" + key + "' is " + v + ", expected an integer >= " + min);
        }
        return (int) v;
    }

    public Optional<Long> optLong(String key) {
        return values.containsKey(key) ? Optional.of(requireLong(key)) : Optional.empty();
    }

    public Optional<Double> optDouble(String key) {
        Object v = values.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (v instanceof Double d) {
            return Optional.of(d);
        }
        if (v instanceof Long l) {
            return Optional.of(l.doubleValue());
        }
        throw wrongType(key, "a number");
    }

    public Optional<Boolean> optBool(String key) {
        Object v = values.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (!(v instanceof Boolean b)) {
            throw wrongType(key, "a bool");
        }
        return Optional.of(b);
    }

    public String requireString(String key) {
        return optString(key).orElseThrow(() -> missing(key));
    }

    public Optional<String> optString(String key) {
        Object v = values.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (!(v instanceof String s)) {
            throw wrongType(key, "a string");
        }
        return Optional.of(s);
    }

    /** An array whose items are all of {@code item} type. */
    public Array requireArray(String key, ValueType... itemTypes) {
        return optArray(key, itemTypes).orElseThrow(() -> missing(key));
    }

    public Optional<Array> optArray(String key, ValueType... itemTypes) {
        Object v = values.get(key);
        if (v == null) {
            return Optional.empty();
        }
        if (!(v instanceof Array a)) {
            throw wrongType(key, "an array");
        }
        for (ValueType t : itemTypes) {
            if (a.itemType() == t) {
                return Optional.of(a);
            }
        }
        throw new CheckpointException(file + ": metadata key '" + key + "' is an array of " + a.itemType() + ", expected "
                + Arrays.toString(itemTypes));
    }

    /** The file these pairs come from, for messages. */
    public String file() {
        return file;
    }
}
