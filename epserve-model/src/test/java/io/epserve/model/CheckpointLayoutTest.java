package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.Checkpoint;
import io.epserve.format.SafetensorsWriter;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The same weights stored in every layout epserve reads give the same logits: per-expert
 * w1/w2/w3 under block_sparse_moe (the fixture), per-expert gate_proj/up_proj/down_proj under
 * mlp, stacked transformers-5 experts, sharded files with an index, and tied embeddings.
 */
class CheckpointLayoutTest {
    @TempDir
    Path tmp;

    static final int[] TOKENS = {1, 72, 101, 108, 108, 111, 33, 7};

    /** A tensor to write: its name, shape and bytes (copied from other tensors). */
    record Out(String name, Tensor like, long[] shape, List<MemorySegment> parts) {}

    static float[] logits(Path dir) {
        try (LoadedModel m = LoadedModel.load(dir, LoadedModel.Options.defaults())) {
            return m.transformer().forward(m.transformer().newCache(TOKENS.length), TOKENS, TOKENS.length, true, RoutingListener.NONE);
        }
    }

    /** Rewrites the mixtral fixture: {@code map} turns the original tensors into the ones to write, per shard. */
    static void rewrite(Path dst, Function<Map<String, Tensor>, List<List<Out>>> map, Function<ObjectNode, ObjectNode> config)
            throws IOException {
        Path src = Fixtures.model("mixtral");
        Files.createDirectories(dst);
        for (String f : List.of("tokenizer.json", "tokenizer_config.json", "generation_config.json")) {
            Files.copy(src.resolve(f), dst.resolve(f));
        }
        ObjectNode cfg = (ObjectNode) Checkpoint.readJson(src.resolve("config.json")).deepCopy();
        Files.writeString(dst.resolve("config.json"), new ObjectMapper().writeValueAsString(config.apply(cfg)));
        try (Checkpoint c = Checkpoint.open(src)) {
            Map<String, Tensor> all = new LinkedHashMap<>();
            for (String n : c.names()) {
                all.put(n, c.tensor(n));
            }
            List<List<Out>> shards = map.apply(all);
            Map<String, String> weightMap = new LinkedHashMap<>();
            for (int s = 0; s < shards.size(); s++) {
                String file = shards.size() == 1 ? "model.safetensors"
                        : String.format("model-%05d-of-%05d.safetensors", s + 1, shards.size());
                List<Out> outs = shards.get(s);
                List<SafetensorsWriter.Spec> specs = outs.stream().map(o -> new SafetensorsWriter.Spec(o.name(), o.like().dtype(), o.shape())).toList();
                SafetensorsWriter.write(dst.resolve(file), specs, (i, spec, seg) -> {
                    long off = 0;
                    for (MemorySegment part : outs.get(i).parts()) {
                        MemorySegment.copy(part, 0, seg, off, part.byteSize());
                        off += part.byteSize();
                    }
                });
                outs.forEach(o -> weightMap.put(o.name(), file));
            }
            if (shards.size() > 1) {
                ObjectNode index = new ObjectMapper().createObjectNode();
                index.putObject("metadata").put("total_size", 0);
                ObjectNode wm = index.putObject("weight_map");
                weightMap.forEach(wm::put);
                Files.writeString(dst.resolve("model.safetensors.index.json"), index.toString());
            }
        }
    }

    static Out same(String name, Tensor t) {
        return new Out(name, t, t.shape(), List.of(t.data()));
    }

    @Test
    void everyLayoutGivesTheSameLogits() throws IOException {
        float[] reference = logits(Fixtures.model("mixtral"));
        ModelConfig cfg = ModelConfig.from(Checkpoint.readJson(Fixtures.model("mixtral").resolve("config.json")));
        int experts = cfg.numExperts();

        // per-expert gate_proj/up_proj/down_proj under mlp.*
        Path renamed = tmp.resolve("renamed");
        rewrite(renamed, all -> List.of(all.entrySet().stream().map(e -> same(e.getKey()
                .replace("block_sparse_moe", "mlp").replace(".w1.", ".gate_proj.").replace(".w3.", ".up_proj.")
                .replace(".w2.", ".down_proj."), e.getValue())).toList()), c -> c);
        assertThat(logits(renamed)).containsExactly(reference);

        // stacked experts (transformers 5), mlp.* prefix
        Path stacked = tmp.resolve("stacked");
        rewrite(stacked, all -> {
            List<Out> out = new ArrayList<>();
            for (var e : all.entrySet()) {
                if (!e.getKey().contains(".experts.")) {
                    out.add(same(e.getKey().replace("block_sparse_moe", "mlp"), e.getValue()));
                }
            }
            for (int l = 0; l < cfg.layers(); l++) {
                String p = "model.layers." + l + ".block_sparse_moe.experts.";
                List<MemorySegment> gateUp = new ArrayList<>();
                List<MemorySegment> down = new ArrayList<>();
                for (int x = 0; x < experts; x++) {
                    gateUp.add(all.get(p + x + ".w1.weight").data());
                    gateUp.add(all.get(p + x + ".w3.weight").data());
                    down.add(all.get(p + x + ".w2.weight").data());
                }
                Tensor like = all.get(p + "0.w1.weight");
                String q = "model.layers." + l + ".mlp.experts.";
                out.add(new Out(q + "gate_up_proj", like, new long[] {experts, 2L * cfg.moeIntermediate(), cfg.hidden()}, gateUp));
                out.add(new Out(q + "down_proj", like, new long[] {experts, cfg.hidden(), cfg.moeIntermediate()}, down));
            }
            return List.of(out);
        }, c -> c);
        assertThat(logits(stacked)).containsExactly(reference);

        // three shards with an index
        Path sharded = tmp.resolve("sharded");
        rewrite(sharded, all -> {
            List<List<Out>> shards = List.of(new ArrayList<>(), new ArrayList<>(), new ArrayList<>());
            int i = 0;
            for (var e : all.entrySet()) {
                shards.get(i++ % 3).add(same(e.getKey(), e.getValue()));
            }
            return shards;
        }, c -> c);
        assertThat(Files.exists(sharded.resolve("model-00003-of-00003.safetensors"))).isTrue();
        assertThat(logits(sharded)).containsExactly(reference);
    }

    @Test
    void tiedEmbeddingsUseTheEmbeddingAsLmHead() throws IOException {
        // reference: an untied model whose lm_head is a copy of the embedding
        Path untied = tmp.resolve("untied");
        rewrite(untied, all -> List.of(all.entrySet().stream().map(e -> e.getKey().equals("lm_head.weight")
                ? same("lm_head.weight", all.get("model.embed_tokens.weight")) : same(e.getKey(), e.getValue())).toList()), c -> c);
        Path tied = tmp.resolve("tied");
        rewrite(tied, all -> List.of(all.entrySet().stream().filter(e -> !e.getKey().equals("lm_head.weight"))
                .map(e -> same(e.getKey(), e.getValue())).toList()), c -> c.put("tie_word_embeddings", true));
        float[] want = logits(untied);
        assertThat(logits(tied)).containsExactly(want);
        assertThat(want).isNotEqualTo(logits(Fixtures.model("mixtral")));
    }
}
