package io.epserve.sim;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.model.plan.WeightFormat;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Iterator;
import java.util.Map;

/**
 * Compute time on this machine: a {@link KernelCost} per routed-expert storage format, one for the
 * frontend's own products (attention, router, shared experts, lm_head; stored BF16), and the
 * frontend's work that is not a weight product (norms, RoPE, attention over the KV cache, thread
 * hand-offs), per layer and per token per layer. All figures are per thread; a task on T threads
 * takes 1/T of it (the kernels split rows evenly over the pool).
 *
 * @param experts              per expert storage format
 * @param frontend             the frontend's BF16 products
 * @param frontendLayerSeconds per layer per micro-batch, besides the products (wall time of the frontend)
 * @param frontendTokenSeconds per token per layer, besides the products (wall time of the frontend)
 * @param source               where the figures come from
 */
public record CostModel(Map<WeightFormat, KernelCost> experts, KernelCost frontend, double frontendLayerSeconds,
                        double frontendTokenSeconds, String source) {

    private static final ObjectMapper JSON = new ObjectMapper();

    public CostModel {
        experts = Map.copyOf(new EnumMap<>(experts));
        if (!(frontendLayerSeconds >= 0) || !(frontendTokenSeconds >= 0)) {
            throw new IllegalArgumentException("frontend per-layer and per-token seconds must be >= 0");
        }
    }

    /**
     * The figures recorded in BENCHMARKS.md for this 2-vCPU Zen 3 guest: ExpertBatchBench and the
     * quantized matvec/matmul rows (one thread), and the single-process decode's time outside the
     * dispatcher (≈ 1.05 ms per layer for one sequence, ≈ 7 ms for 32). {@code --fit-cost} measures
     * fresh ones.
     */
    public static CostModel thisMachine() {
        Map<WeightFormat, KernelCost> e = new EnumMap<>(WeightFormat.class);
        e.put(WeightFormat.BF16, new KernelCost(0, 19.2e9, 44.4e9));
        e.put(WeightFormat.F16, new KernelCost(0, 19.2e9, 44.4e9));
        e.put(WeightFormat.F32, new KernelCost(0, 24.7e9, 43.0e9));
        e.put(WeightFormat.Q8_0, new KernelCost(0, 5.6e9, 29.9e9));
        e.put(WeightFormat.Q4_0, new KernelCost(0, 3.8e9, 44.0e9));
        e.put(WeightFormat.Q4_K, new KernelCost(0, 2.6e9, 39.2e9));
        return new CostModel(e, e.get(WeightFormat.BF16), 0.64e-3, 0.10e-3, "BENCHMARKS.md figures (kernels and bench ep, 2-vCPU Zen 3)");
    }

    public KernelCost expert(WeightFormat f) {
        KernelCost c = experts.get(f);
        if (c == null) {
            throw new IllegalArgumentException("the cost model (" + source + ") has no figures for experts stored as " + f
                    + "; it has " + experts.keySet());
        }
        return c;
    }

    /** Seconds on one thread for one routed expert of the model over {@code tokens} tokens. */
    public double expertSeconds(ModelShape m, double tokens) {
        return expert(m.expertFormat()).seconds(m.expertBytes(), m.paramsPerExpert(), tokens);
    }

    /** Seconds on one thread of the frontend's weight products of one layer over {@code tokens} tokens. */
    public double frontendProductSeconds(ModelShape m, int layer, double tokens) {
        long p = m.frontendParams(layer);
        return frontend.seconds(ModelShape.bytes(p, m.frontendFormat()), p, tokens);
    }

    /** Seconds on one thread of the output head over {@code tokens} tokens. */
    public double headSeconds(ModelShape m, double tokens) {
        return frontend.seconds(ModelShape.bytes(m.headParams(), m.frontendFormat()), m.headParams(), tokens);
    }

    /** The same model with other frontend overheads (what a calibration fits). */
    public CostModel withFrontendOverheads(double layerSeconds, double tokenSeconds, String newSource) {
        return new CostModel(experts, frontend, layerSeconds, tokenSeconds, newSource);
    }

    /**
     * Every kernel {@code factor} times slower (rates divided, per-call costs multiplied); the
     * frontend's other work unchanged. What a calibration applies when the kernels were measured
     * at another moment than the runs (on a shared machine, minutes apart is another machine).
     */
    public CostModel slower(double factor, String newSource) {
        if (!(factor > 0)) {
            throw new IllegalArgumentException("a slow-down factor must be > 0, got " + factor);
        }
        Map<WeightFormat, KernelCost> e = new EnumMap<>(WeightFormat.class);
        experts.forEach((f, k) -> e.put(f, slower(k, factor)));
        return new CostModel(e, slower(frontend, factor), frontendLayerSeconds, frontendTokenSeconds, newSource);
    }

    private static KernelCost slower(KernelCost k, double factor) {
        return new KernelCost(k.fixedSeconds() * factor, k.bytesPerSecond() / factor, k.flopsPerSecond() / factor);
    }

    /** Writes the model as JSON: {"source":..., "frontend":{...}, "frontend_layer_seconds":..., "experts":{"bf16":{...}}}. */
    public void write(Path file) {
        ObjectNode root = JSON.createObjectNode();
        root.put("source", source);
        root.set("frontend", node(frontend));
        root.put("frontend_layer_seconds", frontendLayerSeconds);
        root.put("frontend_token_seconds", frontendTokenSeconds);
        ObjectNode ex = root.putObject("experts");
        experts.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(en -> ex.set(en.getKey().label(), node(en.getValue())));
        try {
            Files.writeString(file, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n");
        } catch (IOException ex2) {
            throw new UncheckedIOException("cannot write cost model " + file + ": " + ex2.getMessage(), ex2);
        }
    }

    /** Reads what {@link #write} writes; a missing or malformed field is named. */
    public static CostModel read(Path file) {
        JsonNode root;
        try {
            root = JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read cost model " + file + ": " + e.getMessage(), e);
        }
        String where = "cost model " + file;
        Map<WeightFormat, KernelCost> e = new EnumMap<>(WeightFormat.class);
        JsonNode ex = required(root, "experts", where);
        for (Iterator<Map.Entry<String, JsonNode>> it = ex.properties().iterator(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> en = it.next();
            e.put(WeightFormat.parse(en.getKey()), kernel(en.getValue(), where + " experts." + en.getKey()));
        }
        return new CostModel(e, kernel(required(root, "frontend", where), where + " frontend"),
                number(root, "frontend_layer_seconds", where), number(root, "frontend_token_seconds", where),
                root.path("source").asText(file.toString()));
    }

    private static ObjectNode node(KernelCost k) {
        ObjectNode n = JSON.createObjectNode();
        n.put("fixed_seconds", k.fixedSeconds());
        n.put("bytes_per_second", k.bytesPerSecond());
        n.put("flops_per_second", k.flopsPerSecond());
        return n;
    }

    private static KernelCost kernel(JsonNode n, String where) {
        return new KernelCost(number(n, "fixed_seconds", where), number(n, "bytes_per_second", where), number(n, "flops_per_second", where));
    }

    private static JsonNode required(JsonNode n, String field, String where) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            throw new IllegalArgumentException(where + ": missing field '" + field + "'");
        }
        return v;
    }

    private static double number(JsonNode n, String field, String where) {
        JsonNode v = required(n, field, where);
        if (!v.isNumber()) {
            throw new IllegalArgumentException(where + ": field '" + field + "' must be a number, got " + v);
        }
        return v.asDouble();
    }
}
