package io.epserve.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;

/**
 * What a frontend keeps in its state directory ({@code serve --state-dir DIR}), so that a
 * restarted frontend resumes where it was: its frontend id (its workers still hold their experts
 * for it), its placement (epoch, workers, replicas) and the load window, plus the workers' host
 * labels. One JSON file, {@value #FILE}, written atomically (a temporary file in the same
 * directory, then a rename) at every placement change and periodically.
 *
 * <p>A file that cannot be read or does not describe this model is an error naming the file, not a
 * silent fresh start: a frontend that quietly forgot its id would leave its workers held by a
 * ghost until their lease expires. Delete the file to start fresh.
 */
public final class FrontendState {
    public static final String FILE = "frontend-state.json";
    private static final int VERSION = 1;
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * One snapshot.
     *
     * @param replicas [layer][expert] worker indices, null for dense layers
     * @param window   [layer] routed tokens per expert over the load window, null for dense layers
     * @param hosts    host label per worker address (those that have one)
     */
    public record Snapshot(String frontendId, long epoch, ExpertPlacement.Policy policy, List<String> workers, int numExperts,
                           int[][][] replicas, long[][] window, Map<String, String> hosts) {
        public Snapshot {
            Objects.requireNonNull(frontendId, "frontendId");
            Objects.requireNonNull(policy, "policy");
            workers = List.copyOf(workers);
            hosts = Map.copyOf(hosts);
        }

        /** The snapshot of a serving frontend. */
        public static Snapshot of(String frontendId, ExpertPlacement p, ExpertLoad window, Map<String, String> hosts) {
            int[][][] replicas = new int[p.layers()][][];
            long[][] tokens = new long[p.layers()][];
            for (int l = 0; l < p.layers(); l++) {
                if (!p.isSparse(l)) {
                    continue;
                }
                replicas[l] = new int[p.numExperts()][];
                for (int e = 0; e < p.numExperts(); e++) {
                    replicas[l][e] = p.replicasOf(l, e);
                }
                tokens[l] = window.has(l) ? window.layer(l) : new long[p.numExperts()];
            }
            return new Snapshot(frontendId, p.epoch(), p.policy(), p.workers(), p.numExperts(), replicas, tokens, hosts);
        }

        /** The saved placement for a model with these sparse layers and experts; throws IllegalArgumentException when it does not fit. */
        public ExpertPlacement placement(boolean[] sparseLayers, int experts) {
            if (experts != numExperts || sparseLayers.length != replicas.length) {
                throw new IllegalArgumentException("it describes a model with " + replicas.length + " layers of " + numExperts
                        + " experts, this one has " + sparseLayers.length + " of " + experts);
            }
            return ExpertPlacement.of(sparseLayers, experts, workers, policy, replicas, epoch);
        }

        /** The saved load window. */
        public ExpertLoad load() {
            return ExpertLoad.of(numExperts, window);
        }
    }

    private final Path dir;

    /** The state directory, created when missing. */
    public FrontendState(Path dir) {
        this.dir = Objects.requireNonNull(dir, "dir");
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("--state-dir " + dir + ": cannot create it: " + e.getMessage(), e);
        }
        if (!Files.isWritable(dir)) {
            throw new IllegalArgumentException("--state-dir " + dir + " is not writable");
        }
    }

    public Path file() {
        return dir.resolve(FILE);
    }

    /** The saved snapshot, or null when the directory holds none; throws IllegalArgumentException naming the file when it is corrupt. */
    public Snapshot load() {
        Path f = file();
        if (!Files.exists(f)) {
            return null;
        }
        try {
            JsonNode root = JSON.readTree(f.toFile());
            if (root == null || !root.isObject()) {
                throw new IllegalArgumentException("not a JSON object");
            }
            if (root.path("version").asInt(-1) != VERSION) {
                throw new IllegalArgumentException("version " + root.path("version") + ", this epserve reads version " + VERSION);
            }
            String id = text(root, "frontend_id");
            if (!FrontendCredentials.isValidId(id)) {
                throw new IllegalArgumentException("malformed frontend_id '" + id + "'");
            }
            JsonNode p = object(root, "placement");
            long epoch = p.path("epoch").asLong(-1);
            if (epoch < 0) {
                throw new IllegalArgumentException("placement.epoch missing or negative");
            }
            ExpertPlacement.Policy policy = ExpertPlacement.Policy.valueOf(text(p, "policy").toUpperCase(Locale.ROOT));
            List<String> workers = new ArrayList<>();
            for (JsonNode w : array(p, "workers")) {
                workers.add(w.asText());
            }
            int experts = p.path("experts").asInt(-1);
            if (experts < 1) {
                throw new IllegalArgumentException("placement.experts missing");
            }
            JsonNode layers = array(p, "layers");
            int[][][] replicas = new int[layers.size()][][];
            long[][] window = new long[layers.size()][];
            JsonNode load = array(root, "load");
            for (int l = 0; l < layers.size(); l++) {
                JsonNode layer = layers.get(l);
                if (layer.isNull()) {
                    continue;
                }
                replicas[l] = new int[layer.size()][];
                for (int e = 0; e < layer.size(); e++) {
                    JsonNode r = layer.get(e);
                    replicas[l][e] = new int[r.size()];
                    for (int i = 0; i < r.size(); i++) {
                        replicas[l][e][i] = r.get(i).asInt();
                    }
                }
                JsonNode t = load.get(l);
                window[l] = new long[experts];
                for (int e = 0; t != null && e < Math.min(experts, t.size()); e++) {
                    window[l][e] = t.get(e).asLong();
                }
            }
            Map<String, String> hosts = new LinkedHashMap<>();
            root.path("hosts").properties().forEach(en -> hosts.put(en.getKey(), en.getValue().asText()));
            return new Snapshot(id, epoch, policy, workers, experts, replicas, window, hosts);
        } catch (IOException | RuntimeException e) {
            throw new IllegalArgumentException("--state-dir: " + f + " is corrupt (" + e.getMessage() + "); delete it to start fresh "
                    + "(the workers then map their experts again)", e);
        }
    }

    /** Writes the snapshot atomically: readers see the previous file or this one, never a part. */
    public synchronized void save(Snapshot s) {
        ObjectNode root = JSON.createObjectNode();
        root.put("version", VERSION);
        root.put("frontend_id", s.frontendId());
        ObjectNode p = root.putObject("placement");
        p.put("epoch", s.epoch());
        p.put("policy", s.policy().name().toLowerCase(Locale.ROOT));
        p.put("experts", s.numExperts());
        ArrayNode ws = p.putArray("workers");
        s.workers().forEach(ws::add);
        ArrayNode layers = p.putArray("layers");
        ArrayNode load = root.putArray("load");
        for (int l = 0; l < s.replicas().length; l++) {
            if (s.replicas()[l] == null) {
                layers.addNull();
                load.addNull();
                continue;
            }
            ArrayNode layer = layers.addArray();
            for (int[] r : s.replicas()[l]) {
                ArrayNode a = layer.addArray();
                for (int w : r) {
                    a.add(w);
                }
            }
            ArrayNode t = load.addArray();
            for (long v : s.window()[l]) {
                t.add(v);
            }
        }
        ObjectNode hosts = root.putObject("hosts");
        s.hosts().forEach(hosts::put);
        Path tmp = dir.resolve(FILE + ".tmp");
        try {
            JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), root);
            try {
                Files.move(tmp, file(), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file(), StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("--state-dir: cannot write " + file() + ": " + e.getMessage(), e);
        }
    }

    private static String text(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || !v.isTextual()) {
            throw new IllegalArgumentException(field + " missing");
        }
        return v.asText();
    }

    private static JsonNode object(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || !v.isObject()) {
            throw new IllegalArgumentException(field + " missing");
        }
        return v;
    }

    private static JsonNode array(JsonNode n, String field) {
        JsonNode v = n.get(field);
        if (v == null || !v.isArray()) {
            throw new IllegalArgumentException(field + " missing");
        }
        return v;
    }
}
