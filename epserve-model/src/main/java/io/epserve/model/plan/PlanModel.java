package io.epserve.model.plan;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.model.Architecture;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.model.tokenizer.DemoTokenizer;
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

    /** A model directory (its config.json) or a config.json file. */
    public static PlanModel load(Path modelOrConfig) {
        if (!Files.exists(modelOrConfig)) {
            throw new CheckpointException(modelOrConfig + ": no such model directory or config.json");
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

    /**
     * The config.json {@link DemoModel#write} writes for a spec (a test holds the two equal): the
     * planner needs the demo's shape without writing 1.3 GB of weights.
     */
    public static ObjectNode demoConfigJson(DemoModel.Spec s) {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("MixtralForCausalLM");
        c.put("model_type", "mixtral");
        c.put("vocab_size", s.vocab());
        c.put("hidden_size", s.hidden());
        c.put("intermediate_size", s.intermediate());
        c.put("num_hidden_layers", s.layers());
        c.put("num_attention_heads", s.heads());
        c.put("num_key_value_heads", s.kvHeads());
        c.put("num_local_experts", s.experts());
        c.put("num_experts_per_tok", s.topK());
        c.put("hidden_act", "silu");
        c.put("max_position_embeddings", s.maxPositions());
        c.put("rms_norm_eps", 1e-5);
        c.put("rope_theta", s.ropeTheta());
        c.put("tie_word_embeddings", false);
        c.put("torch_dtype", "bfloat16");
        c.putNull("sliding_window");
        c.put("bos_token_id", DemoTokenizer.BOS_ID);
        c.put("eos_token_id", DemoTokenizer.EOS_ID);
        c.put("epserve_note", "epserve demo model: deterministic random weights (seed " + s.seed() + "); its text is noise");
        return c;
    }
}
