package io.epserve.model.gguf;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.data.Offset.offset;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.epserve.model.Fixtures;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.model.MoeTransformer;
import io.epserve.model.RoutingListener;
import io.epserve.tensor.DType;
import io.epserve.tensor.QuantizedActivations;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * GGUF files written by llama.cpp's tools (../shared/fixtures/gguf) run through the ordinary
 * loader: the F16 file computes the HF folder's logits, and every file reproduces llama.cpp's
 * greedy tokens and its top-10 log-probabilities within the README's tolerances.
 */
class GgufModelTest {
    static Path dir() {
        return Fixtures.root().resolve("gguf");
    }

    /** Links to the GGUF fixtures: the tensors converted from them are cached beside the links, not in the shared fixtures. */
    @TempDir
    static Path links;

    static synchronized Path file(String name) {
        Path link = links.resolve(name);
        try {
            return Files.exists(link, LinkOption.NOFOLLOW_LINKS) ? link : Files.createSymbolicLink(link, dir().resolve(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static JsonNode reference() {
        try {
            return new ObjectMapper().readTree(dir().resolve("reference.json").toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Stream<String> files() {
        List<String> out = new ArrayList<>();
        reference().get("files").fieldNames().forEachRemaining(out::add);
        return out.stream();
    }

    /**
     * The README's bound on |Δlogprob| for a float32 implementation, by file. For the quantized
     * files epserve by default quantizes activations to 8 bits as llama.cpp does
     * ({@link QuantizedActivations#INT8}); both then carry activation rounding of about 1e-2 in
     * logprob against float64 (the README's figures for llama.cpp), not the same roundings where
     * the formats differ (K-quants: llama.cpp's Q8_K activations, epserve's 32-blocks; Q5_K/Q6_K
     * converted to Q8_0), so they may sit up to twice that apart: measured at most 0.022 (q5_k),
     * against 0.017 with float activations.
     */
    static double logprobTolerance(String file) {
        double quantized = QuantizedActivations.configured() == QuantizedActivations.INT8 ? 3e-2 : 2e-2;
        return file.contains("f16") && !file.contains("bf16") ? 1e-3 : file.contains("bf16") ? 1e-2 : quantized;
    }

    @Test
    void f16LogitsEqualTheHfFolders() {
        JsonNode ref = reference();
        try (LoadedModel gguf = LoadedModel.load(file("synth-moe-f16.gguf"), LoadedModel.Options.defaults());
             LoadedModel hf = LoadedModel.load(dir().resolve("hf"), LoadedModel.Options.defaults())) {
            assertThat(gguf.config().architecture()).isEqualTo(hf.config().architecture());
            int vocab = hf.config().vocabSize();
            for (JsonNode p : ref.get("prompts")) {
                int[] tokens = Fixtures.ints(p);
                float[] a = logits(gguf.transformer(), tokens);
                float[] b = logits(hf.transformer(), tokens);
                assertThat(a).hasSize(tokens.length * vocab);
                double max = 0;
                for (int i = 0; i < a.length; i++) {
                    max = Math.max(max, Math.abs(a[i] - b[i]));
                }
                assertThat(max).as("max |Δlogit| GGUF F16 vs HF, prompt of %d", tokens.length).isLessThan(1e-3);
            }
        }
    }

    private static float[] logits(MoeTransformer t, int[] tokens) {
        KvCache cache = t.newCache(tokens.length);
        return t.forward(cache, tokens, tokens.length, true, RoutingListener.NONE);
    }

    @ParameterizedTest
    @MethodSource("files")
    void greedyTokensAndLogprobsEqualLlamaCpps(String file) {
        JsonNode ref = reference();
        int eos = ref.get("model").get("eos").asInt();
        double tol = logprobTolerance(file);
        try (LoadedModel m = LoadedModel.load(file(file), LoadedModel.Options.defaults())) {
            for (JsonNode run : ref.get("files").get(file).get("llama_cpp")) {
                int[] prompt = Fixtures.ints(run.get("prompt"));
                int[] want = Fixtures.ints(run.get("generated"));
                KvCache cache = m.transformer().newCache(prompt.length + want.length);
                float[] logits = m.transformer().forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
                int[] got = new int[want.length];
                for (int i = 0; i < want.length; i++) {
                    // llama.cpp's request ignores EOS: the argmax over every other token
                    int best = eos == 0 ? 1 : 0;
                    for (int v = 0; v < logits.length; v++) {
                        if (v != eos && logits[v] > logits[best]) {
                            best = v;
                        }
                    }
                    got[i] = best;
                    double lse = logSumExp(logits);
                    for (JsonNode top : run.get("top10").get(i)) {
                        double lp = logits[top.get("id").asInt()] - lse;
                        assertThat(lp).as("%s prompt %d step %d logprob of %d", file, prompt.length, i, top.get("id").asInt())
                                .isCloseTo(top.get("logprob").asDouble(), offset(tol));
                    }
                    // feed llama.cpp's token, so one early miss does not hide the later steps
                    logits = m.transformer().forward(cache, new int[] {want[i]}, 1, false, RoutingListener.NONE);
                }
                assertThat(got).as("%s greedy after prompt of %d tokens", file, prompt.length).containsExactly(want);
            }
        }
    }

    private static double logSumExp(float[] x) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : x) {
            max = Math.max(max, v);
        }
        double s = 0;
        for (float v : x) {
            s += Math.exp(v - max);
        }
        return max + Math.log(s);
    }

    @Test
    void typesWithAKernelAreComputedOnInPlaceAndK5K6AreConvertedToQ8_0() {
        try (LoadedModel q4km = LoadedModel.load(file("synth-moe-q4_k_m.gguf"), LoadedModel.Options.defaults())) {
            // Q4_K: a view of the mapping; Q6_K (blk.1.ffn_down_exps) re-quantized once to Q8_0
            assertThat(q4km.weights().expert(0, 0).gate().dtype()).isEqualTo(DType.Q4_K);
            assertThat(q4km.weights().expert(1, 3).down().dtype()).isEqualTo(DType.Q8_0);
            assertThat(q4km.weights().lmHead().dtype()).isEqualTo(DType.Q8_0);
        }
        try (LoadedModel q8 = LoadedModel.load(file("synth-moe-q8_0.gguf"), LoadedModel.Options.defaults())) {
            assertThat(q8.weights().expert(1, 2).up().dtype()).isEqualTo(DType.Q8_0);
            assertThat(q8.weights().embed().dtype()).isEqualTo(DType.Q8_0);
        }
    }

    @Test
    void aSecondLoadMapsTheConvertedTensorsAndComputesTheSame(@TempDir Path tmp) throws IOException {
        Path q6 = Files.createSymbolicLink(tmp.resolve("synth-moe-q6_k.gguf"), dir().resolve("synth-moe-q6_k.gguf"));
        int[] tokens = Fixtures.ints(reference().get("prompts").get(0));
        float[] first;
        try (LoadedModel m = LoadedModel.load(q6, LoadedModel.Options.defaults())) {
            assertThat(m.checkpoint().gguf().orElseThrow().conversions()).isPositive();
            first = logits(m.transformer(), tokens);
        }
        try (LoadedModel m = LoadedModel.load(q6, LoadedModel.Options.defaults())) {
            assertThat(m.checkpoint().gguf().orElseThrow().conversions()).isZero();
            assertThat(m.checkpoint().gguf().orElseThrow().convertedFile()).hasValueSatisfying(
                    f -> assertThat(f.getParent()).isEqualTo(tmp.resolve(".epserve-cache")));
            assertThat(m.weights().expert(1, 3).down().dtype()).isEqualTo(DType.Q8_0);
            assertThat(logits(m.transformer(), tokens)).containsExactly(first);
        }
    }

    @Test
    void expertDTypeConvertsTheExpertsIntoACacheBesideTheFile(@TempDir Path tmp) throws IOException {
        Path file = Files.copy(dir().resolve("synth-moe-f16.gguf"), tmp.resolve("synth-moe-f16.gguf"));
        JsonNode ref = reference();
        try (LoadedModel m = LoadedModel.load(file, LoadedModel.Options.defaults().withExpertDType(DType.BF16));
             LoadedModel hf = LoadedModel.load(dir().resolve("hf"), LoadedModel.Options.defaults())) {
            assertThat(m.convertedExperts()).isPresent();
            assertThat(m.convertedExperts().get().path().getParent()).isEqualTo(tmp.resolve(".epserve-cache"));
            assertThat(m.weights().expert(1, 3).gate().dtype()).isEqualTo(DType.BF16);
            int[] tokens = Fixtures.ints(ref.get("prompts").get(0));
            float[] a = logits(m.transformer(), tokens);
            float[] b = logits(hf.transformer(), tokens);
            for (int i = 0; i < a.length; i++) {
                assertThat((double) a[i]).isCloseTo(b[i], offset(1e-3));
            }
        }
    }

    @Test
    void aFolderHoldingOneGgufFileLoadsIt(@TempDir Path tmp) throws IOException {
        Files.createSymbolicLink(tmp.resolve("model.gguf"), dir().resolve("synth-moe-q8_0.gguf"));
        try (LoadedModel m = LoadedModel.load(tmp, LoadedModel.Options.defaults())) {
            assertThat(m.config().numExperts()).isEqualTo(4);
        }
    }
}
