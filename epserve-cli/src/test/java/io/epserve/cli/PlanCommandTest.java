package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.CheckpointException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;
import org.assertj.core.data.Offset;

/** `epserve plan`: human and JSON output, and one clear line with exit code 2 for every bad input. */
class PlanCommandTest {
    static final ObjectMapper JSON = new ObjectMapper();

    /** Through Main once `plan` is registered there; until then, PlanCommand alone with Main's error mapping. */
    static CliRunner.Outcome plan(String... args) {
        if (new CommandLine(new Main()).getSubcommands().containsKey("plan")) {
            List<String> all = new ArrayList<>(List.of("plan"));
            all.addAll(List.of(args));
            return CliRunner.inProcess(all.toArray(String[]::new));
        }
        CommandLine cl = new CommandLine(new PlanCommand());
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        cl.setExecutionExceptionHandler((e, c, parsed) -> {
            if (e instanceof IllegalArgumentException || e instanceof CheckpointException || e instanceof Main.UsageError) {
                c.getErr().println("epserve: error: " + e.getMessage());
                return 2;
            }
            throw e;
        });
        int code = cl.execute(args);
        return new CliRunner.Outcome(code, out.toString(), err.toString());
    }

    static Path fixture(String name) {
        return CliRunner.fixtures().resolve(name).resolve("model");
    }

    static void assertOneLineError(CliRunner.Outcome o, String contains) {
        assertThat(o.exitCode()).as(o.out() + o.err()).isEqualTo(2);
        assertThat(o.err().strip().lines().toList()).as(o.err()).hasSize(1);
        assertThat(o.err()).startsWith("epserve: error: ").contains(contains);
    }

    @Test
    void humanOutputOfTheDemoModel() {
        CliRunner.Outcome o = plan("--workers", "2", "--memory-per-worker", "2GiB");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(o.out()).contains("built-in demo model demo-mixtral-640m")
                .contains("MixtralForCausalLM: 8 layers (8 sparse)")
                .contains("parameters: 640.")
                .contains("placement epoch 0, policy contiguous, 2 worker(s), 8 experts per sparse layer")
                .contains("worker 0 (w0): 32 experts — layers 0-7: 0-3")
                .contains("frontend:")
                .contains("kv_cache")
                .contains("fits: yes")
                .contains("minimum workers: 1");
        assertThat(o.out().lines()).anyMatch(l -> l.matches("\\s+w1\\s+32\\s+32\\s+.*\\s+yes"));
    }

    @Test
    void jsonOfAFixtureDirectory() throws Exception {
        CliRunner.Outcome o = plan("--model", fixture("deepseek_v3").toString(), "--workers", "4", "--memory-per-worker", "64MiB",
                "--overhead", "0", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        JsonNode j = JSON.readTree(o.out());
        assertThat(j.get("total_params").asLong()).isEqualTo(1_016_880L); // the fixture's tensor elements
        assertThat(j.get("active_params").asLong()).isPositive().isLessThan(1_016_880L);
        assertThat(j.get("workers")).hasSize(4);
        long perExpert = 3L * 128 * 64 * 2;
        for (JsonNode w : j.get("workers")) {
            // 2 sparse layers × 4 of 16 experts
            assertThat(w.get("experts").asInt()).isEqualTo(8);
            assertThat(w.get("bytes").asLong()).isEqualTo(8 * perExpert);
            assertThat(w.get("fits").asBoolean()).isTrue();
            assertThat(w.get("layers").get(0).get("layer").asInt()).isEqualTo(1);
        }
        assertThat(j.get("frontend").get("bytes").asLong()).isPositive();
        // MLA's compressed cache: 3 layers × (kv_lora_rank 16 + qk_rope_head_dim 8) f32 per token
        assertThat(j.get("frontend").get("components").get("kv_cache").asLong()).isEqualTo(4096L * 3 * (16 + 8) * 4);
        assertThat(j.get("kv_bytes_per_token").asLong()).isEqualTo(3L * (16 + 8) * 4);
        assertThat(j.get("fits").asBoolean()).isTrue();
        assertThat(j.get("min_workers").asInt()).isEqualTo(1);
        assertThat(j.get("options").get("memory_per_worker").asLong()).isEqualTo(64L << 20);
    }

    @Test
    void configFileShardsQuantizedExpertsAndNoFit(@TempDir Path tmp) throws Exception {
        Path cfg = tmp.resolve("config.json");
        Files.copy(fixture("qwen3_moe").resolve("config.json"), cfg);
        CliRunner.Outcome o = plan("--model", cfg.toString(), "--workers", "2", "--expert-shards", "2", "--expert-dtype", "q8_0",
                "--policy", "round-robin", "--memory-per-worker", "100KB", "--overhead", "0", "--kv-tokens", "0", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        JsonNode j = JSON.readTree(o.out());
        assertThat(j.get("options").get("expert_dtype").asText()).isEqualTo("q8_0");
        assertThat(j.get("options").get("policy").asText()).isEqualTo("round-robin");
        long shard = 3L * 128 * 32 / 32 * 34;
        assertThat(j.get("shard_bytes").asLong()).isEqualTo(shard);
        for (JsonNode w : j.get("workers")) {
            assertThat(w.get("shards").asInt()).isEqualTo(3 * 16);
            assertThat(w.get("bytes").asLong()).isEqualTo(3 * 16 * shard);
            assertThat(w.get("layers").get(0).get("shards")).hasSize(16);
        }
        // 3 layers × 16 experts of 39 KiB each: no worker count gets a worker under 100 KB
        assertThat(j.get("fits").asBoolean()).isFalse();
        assertThat(j.get("min_workers").isNull()).isTrue();

        CliRunner.Outcome text = plan("--model", cfg.toString(), "--workers", "2", "--memory-per-worker", "100KB");
        assertThat(text.exitCode()).isZero();
        assertThat(text.out()).contains("fits: NO").contains("minimum workers: none");
    }

    @Test
    void badInputGivesOneLineAndExitCode2(@TempDir Path tmp) throws Exception {
        String mixtral = fixture("mixtral").toString();
        assertOneLineError(plan("--model", tmp.resolve("nothing-here").toString()), "no such directory or file");
        assertOneLineError(plan("--model", tmp.toString()), "no config.json");
        ObjectNode llama = (ObjectNode) JSON.readTree(Files.readString(fixture("mixtral").resolve("config.json")));
        llama.putArray("architectures").add("LlamaForCausalLM");
        Files.writeString(tmp.resolve("config.json"), llama.toString());
        assertOneLineError(plan("--model", tmp.resolve("config.json").toString()), "'LlamaForCausalLM' is not supported");
        Files.writeString(tmp.resolve("config.json"), "{ not json");
        assertOneLineError(plan("--model", tmp.toString()), "malformed JSON");
        assertOneLineError(plan("--model", mixtral, "--memory-per-worker", "24 parsecs"), "--memory-per-worker: bad size '24 parsecs'");
        assertOneLineError(plan("--model", mixtral, "--workers", "0"), "--workers must be at least 1");
        assertOneLineError(plan("--model", mixtral, "--workers", "4", "--expert-shards", "5"), "--expert-shards 5 needs at least as many workers");
        assertOneLineError(plan("--model", mixtral, "--workers", "8", "--expert-shards", "5"), "do not divide the expert intermediate size 192");
        assertOneLineError(plan("--model", mixtral, "--expert-dtype", "q4_k"), "multiples of 256");
        assertOneLineError(plan("--model", mixtral, "--expert-dtype", "int3"), "--expert-dtype: unknown dtype 'int3'");
        assertOneLineError(plan("--model", mixtral, "--dtype", "q8_0"), "--dtype must be bf16, f16 or f32");
        assertOneLineError(plan("--model", mixtral, "--policy", "random"), "--policy must be contiguous, round-robin, replicated or balanced");
    }

    @Test
    void withoutMemoryItPlansForThisMachine() throws Exception {
        CliRunner.Outcome o = plan("--model", fixture("olmoe").toString(), "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        JsonNode j = JSON.readTree(o.out());
        assertThat(j.get("options").get("memory_per_worker").asLong()).isPositive();
        assertThat(j.get("options").get("memory_per_worker_source").asText()).isEqualTo("physical memory of this machine");
    }

    /** A load file for the qwen3_moe fixture (16 experts, every layer sparse): one hot expert per layer. */
    static Path hotLoad(Path dir, int layers) throws Exception {
        ObjectNode root = JSON.createObjectNode();
        var arr = root.putArray("layers");
        for (int l = 0; l < layers; l++) {
            ObjectNode o = arr.addObject();
            o.put("layer", l);
            var t = o.putArray("tokens");
            for (int e = 0; e < 16; e++) {
                t.add(e == 3 ? 400 : 10);
            }
        }
        Path f = dir.resolve("load.json");
        Files.writeString(f, JSON.writeValueAsString(root));
        return f;
    }

    @Test
    void loadGivesBalancednessPerSparseLayerAndBalancedBeatsContiguous(@TempDir Path tmp) throws Exception {
        Path model = fixture("qwen3_moe");
        JsonNode cfg = JSON.readTree(model.resolve("config.json").toFile());
        int layers = cfg.get("num_hidden_layers").asInt();
        Path load = hotLoad(tmp, layers);
        CliRunner.Outcome c = plan("--model", model.toString(), "--workers", "4", "--load", load.toString(), "--json",
                "--memory-per-worker", "1GiB");
        assertThat(c.exitCode()).as(c.err()).isZero();
        JsonNode cj = JSON.readTree(c.out());
        assertThat(cj.get("balancedness")).hasSize(layers);
        // contiguous: the hot expert's worker has 400 + 3·10, the mean is 550 / 4
        assertThat(cj.get("balancedness").get(0).asDouble()).isCloseTo(550.0 / 4 / 430, Offset.offset(1e-9));
        CliRunner.Outcome b = plan("--model", model.toString(), "--workers", "4", "--load", load.toString(), "--json",
                "--policy", "balanced", "--redundant-experts", "1", "--memory-per-worker", "1GiB");
        assertThat(b.exitCode()).as(b.err()).isZero();
        JsonNode bj = JSON.readTree(b.out());
        for (JsonNode v : bj.get("balancedness")) {
            assertThat(v.asDouble()).isGreaterThan(0.95);
        }
        assertThat(bj.get("load_placement").get("placement").get("layers").get(0).get("replicas").get(3)).hasSize(4);
        // human output names the balancedness line
        CliRunner.Outcome h = plan("--model", model.toString(), "--workers", "4", "--load", load.toString(), "--policy", "balanced",
                "--redundant-experts", "1", "--memory-per-worker", "1GiB");
        assertThat(h.out()).contains("balancedness (mean / max per-worker load) per sparse layer:");
    }

    @Test
    void badLoadFilesAndOptionsAreOneLineErrors(@TempDir Path tmp) throws Exception {
        Path model = fixture("qwen3_moe");
        Path bad = tmp.resolve("bad.json");
        Files.writeString(bad, "{\"layers\": [{\"layer\": 0, \"tokens\": [1, 2]}]}");
        assertOneLineError(plan("--model", model.toString(), "--workers", "2", "--load", bad.toString()), "has 2 token counts");
        assertOneLineError(plan("--model", model.toString(), "--workers", "2", "--load", tmp.resolve("none.json").toString()), "--load");
        assertOneLineError(plan("--model", model.toString(), "--workers", "2", "--redundant-experts", "1"), "--policy balanced");
    }

    @Test
    void kvDtypeBf16HalvesTheCacheAndOnlyWhatTheEngineStoresIsAccepted() throws Exception {
        String ds = fixture("deepseek_v3").toString();
        CliRunner.Outcome o = plan("--model", ds, "--workers", "2", "--memory-per-worker", "64MiB", "--kv-dtype", "bf16", "--json");
        assertThat(o.exitCode()).as(o.err()).isZero();
        assertThat(JSON.readTree(o.out()).get("kv_bytes_per_token").asLong()).isEqualTo(3L * (16 + 8) * 2);
        assertOneLineError(plan("--model", ds, "--kv-dtype", "f16"), "--kv-dtype must be f32 or bf16");
    }
}
