package io.epserve.model.plan;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.format.gguf.GgufModel;
import io.epserve.model.Architecture;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A model as the planner sees it: config.json only, no weights.
 *
 * @param source      where the config came from (a path, or the demo model's name)
 * @param architecture the Hugging Face architecture name
 * @param config      the validated config
 * @param params      its parameter count
 */
public record PlanModel(String source, String architecture, ModelConfig config, ParameterCount params) {

    /** A model directory (its config.json), a config.json file, or a GGUF model (its metadata). */
    public static PlanModel load(Path modelOrConfig) {
        if (!Files.exists(modelOrConfig)) {
            throw new CheckpointException(modelOrConfig + ": no such model directory or config.json");
        }
        if (GgufModel.isGguf(modelOrConfig)) {
            return fromJson(modelOrConfig.toString(), Checkpoint.readConfig(modelOrConfig));
        }
        Path file = Files.isDirectory(modelOrConfig) ? modelOrConfig.resolve("config.json") : modelOrConfig;
        return fromJson(file.toString(), Checkpoint.readJson(file));
    }

    public static PlanModel fromJson(String source, JsonNode json) {
        ModelConfig cfg = ModelConfig.from(json);
        int mtp = 0;
        if (cfg.architecture() == Architecture.DEEPSEEK_V3) {
            JsonNode n = json.get("num_nextn_predict_layers");
            mtp = n != null && n.canConvertToInt() ? Math.max(0, n.asInt()) : 0;
        }
        return new PlanModel(source, cfg.architecture().hfName(), cfg, ParameterCount.of(cfg, mtp));
    }

    /** The built-in demo model's config, without writing its weights. */
    public static PlanModel demo(DemoModel.Spec spec) {
        return fromJson("built-in demo model " + spec.name(), demoConfigJson(spec));
    }

    /** The config.json {@link DemoModel#write} writes for a spec: the planner needs no weights. */
    public static ObjectNode demoConfigJson(DemoModel.Spec s) {
        return DemoModel.configJson(s);
    }
}
