package io.epserve.rpc;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The golden fixtures of ../shared/fixtures (see its README) and of epserve-model's test
 * resources, and the single-process answers to compare with.
 */
final class Fixtures {
    private Fixtures() {}

    static final List<String> MODELS = List.of("mixtral", "mixtral_f32", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3");

    static Path root() {
        String p = System.getProperty("epserve.fixtures");
        Path dir = p != null ? Path.of(p) : Path.of("../../shared/fixtures");
        if (!Files.isDirectory(dir)) {
            dir = Path.of("../shared/fixtures");
        }
        return dir.toAbsolutePath().normalize();
    }

    /** The fixtures made by this repository (tools/goldens/make_arch_fixtures.py), in epserve-model's test resources. */
    static final List<String> ARCH_MODELS = List.of("deepseek_v2", "deepseek_v2_lite", "gpt_oss");

    /** A fixture's folder: this repository's own, or the shared one. */
    static Path dirOf(String name) {
        Path local = Path.of("../epserve-model/src/test/resources/fixtures").resolve(name).toAbsolutePath().normalize();
        return Files.isDirectory(local) ? local : root().resolve(name);
    }

    static Path model(String name) {
        return dirOf(name).resolve("model");
    }

    /** The prompts of expected.json, with the 16 greedy tokens the reference generated. */
    record Case(int[] tokens, int[] generated) {}

    static List<Case> cases(String name) {
        try {
            JsonNode exp = new ObjectMapper().readTree(Files.readString(dirOf(name).resolve("expected.json")));
            List<Case> cases = new ArrayList<>();
            for (JsonNode c : exp.get("cases")) {
                cases.add(new Case(ints(c.get("tokens")), ints(c.get("generated"))));
            }
            return cases;
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    static int[] ints(JsonNode arr) {
        int[] r = new int[arr.size()];
        for (int i = 0; i < r.length; i++) {
            r[i] = arr.get(i).asInt();
        }
        return r;
    }

    /** What a transformer computes for one case: all prompt logits and the greedy continuation. */
    record Run(float[] logits, int[] generated) {}

    static Run run(MoeTransformer t, Case c) {
        KvCache cache = t.newCache(c.tokens().length);
        float[] logits = t.forward(cache, c.tokens(), c.tokens().length, true, RoutingListener.NONE);
        return new Run(logits, greedy(t, c.tokens(), c.generated().length));
    }

    /** Greedy decoding with the KV cache, ties to the lowest id (the fixtures' rule). */
    static int[] greedy(MoeTransformer t, int[] prompt, int count) {
        KvCache cache = t.newCache(prompt.length + count);
        float[] logits = t.forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
            out[i] = argmax(logits);
            logits = t.forward(cache, new int[] {out[i]}, 1, false, RoutingListener.NONE);
        }
        return out;
    }

    static int argmax(float[] logits) {
        int best = 0;
        for (int v = 1; v < logits.length; v++) {
            if (logits[v] > logits[best]) {
                best = v;
            }
        }
        return best;
    }

    static double maxAbsDiff(float[] a, float[] b) {
        if (a.length != b.length) {
            throw new AssertionError("lengths " + a.length + " vs " + b.length);
        }
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs((double) a[i] - b[i]));
        }
        return m;
    }

    static LoadedModel load(String name) {
        return LoadedModel.load(model(name), LoadedModel.Options.defaults());
    }
}
