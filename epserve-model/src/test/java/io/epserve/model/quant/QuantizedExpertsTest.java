package io.epserve.model.quant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.epserve.format.Checkpoint;
import io.epserve.format.CheckpointException;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsFile;
import io.epserve.format.SourceKey;
import io.epserve.model.Fixtures;
import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.demo.DemoModel;
import io.epserve.moe.ExpertWeights;
import io.epserve.tensor.DType;
import io.epserve.tensor.Quantizer;
import io.epserve.tensor.Tensor;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Converted (quantized) routed experts: the cache file next to the checkpoint, written once and
 * mapped after, its fallback location, rebuild when stale, one builder among concurrent
 * threads and processes, the refusal of shapes a format cannot store, and the accuracy cost
 * against the experts as stored on every fixture model.
 */
class QuantizedExpertsTest {

    @TempDir
    Path tmp;

    /** A copy of a fixture's model folder (the cache must not land in the shared fixtures). */
    Path copy(String fixture) throws IOException {
        return Fixtures.copyModel(fixture, tmp);
    }

    static LoadedModel load(Path dir, DType dt) {
        return LoadedModel.load(dir, LoadedModel.Options.defaults().withExpertDType(dt));
    }

    @Test
    void writesTheCacheOnceNextToTheCheckpointThenMapsIt() throws IOException {
        Path dir = copy("mixtral");
        Path file;
        FileTime written;
        try (LoadedModel m = load(dir, DType.Q8_0)) {
            QuantizedExperts q = m.convertedExperts().orElseThrow();
            assertThat(q.built()).isTrue();
            file = q.path();
            assertThat(file.getParent()).isEqualTo(dir.resolve(".epserve-cache"));
            assertThat(file.getFileName().toString()).matches("experts-[0-9a-f]{16}-q8_0\\.safetensors");
            written = Files.getLastModifiedTime(file);
            ExpertWeights w = m.weights().expert(1, 3);
            assertThat(w.gate().dtype()).isEqualTo(DType.Q8_0);
            assertThat(w.down().dtype()).isEqualTo(DType.Q8_0);
            // the cache holds exactly the quantized checkpoint tensors
            try (Arena arena = Arena.ofConfined()) {
                ExpertWeights src = m.weights().experts().expert(1, 3);
                for (Tensor[] pair : new Tensor[][] {{src.gate(), w.gate()}, {src.up(), w.up()}, {src.down(), w.down()}}) {
                    Tensor want = Quantizer.quantize(pair[0], DType.Q8_0, arena);
                    assertThat(pair[1].data().mismatch(want.data())).as(pair[1].name()).isEqualTo(-1);
                }
            }
            // everything but the routed experts stays as stored
            assertThat(m.weights().embed().dtype()).isEqualTo(DType.BF16);
        }
        try (LoadedModel m = load(dir, DType.Q8_0)) {
            QuantizedExperts q = m.convertedExperts().orElseThrow();
            assertThat(q.built()).as("second load maps the cache").isFalse();
            assertThat(q.path()).isEqualTo(file);
        }
        assertThat(Files.getLastModifiedTime(file)).isEqualTo(written);
        try (Stream<Path> s = Files.list(file.getParent())) {
            assertThat(s.filter(p -> p.toString().endsWith(".tmp")).toList()).as("no temporaries left").isEmpty();
        }
    }

    @Test
    void storedDtypeMakesNoCopyAndOtherPlainDtypesDo() throws IOException {
        Path bf16 = copy("mixtral");
        try (LoadedModel m = load(bf16, DType.BF16)) {
            assertThat(m.convertedExperts()).isEmpty();
        }
        assertThat(Files.exists(bf16.resolve(".epserve-cache"))).isFalse();
        Path f32 = copy("mixtral_f32");
        try (LoadedModel m = load(f32, DType.BF16)) {
            assertThat(m.convertedExperts().orElseThrow().dtype()).isEqualTo(DType.BF16);
            assertThat(m.weights().expert(0, 0).up().dtype()).isEqualTo(DType.BF16);
        }
    }

    @Test
    void q4kRefusesRowsThatAreNotWholeSuperBlocksNamingTheTensor() throws IOException {
        Path dir = copy("qwen3_moe");
        assertThatThrownBy(() -> load(dir, DType.Q4_K))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("Q4_K")
                .hasMessageContaining("model.layers.")
                .hasMessageContaining("experts.0")
                .hasMessageContaining("not a multiple of 256");
        try (Stream<Path> s = Files.list(dir)) {
            assertThat(s.filter(p -> p.getFileName().toString().startsWith(".epserve")).toList()).as("nothing written").isEmpty();
        }
    }

    /** A Mixtral of hidden 256 and FFN 512 (the demo's generator): every Q4_K row is whole super-blocks. */
    @Test
    void q4kEndToEndOnAModelOfWholeSuperBlocks() {
        DemoModel.Spec spec = new DemoModel.Spec("q4k-test", 256, 2, 4, 2, 4, 2, 512, 512, 1e6, 4096, 5L);
        Path dir = DemoModel.ensure(spec, tmp, Progress.NONE);
        int[] tokens = QuantAccuracy.tokens(48, 512, 3);
        float[] ref;
        try (LoadedModel m = load(dir, null)) {
            ref = QuantAccuracy.logits(m, tokens);
        }
        try (LoadedModel m = load(dir, DType.Q4_K)) {
            assertThat(m.weights().expert(1, 2).down().dtype()).isEqualTo(DType.Q4_K);
            QuantAccuracy.Result r = QuantAccuracy.compare(ref, QuantAccuracy.logits(m, tokens), 512);
            assertThat(r.top1Agreement()).isGreaterThanOrEqualTo(0.8);
            assertThat(r.meanKl()).isLessThan(0.05);
        }
    }

    /**
     * The accuracy cost on every fixture (64 seeded random tokens): Q8_0 is close to lossless,
     * Q4_0 costs more. Measured (mean KL / top-1): Q8_0 6e-5..1e-3 / 0.98..1, Q4_0 0.02..0.05 /
     * 0.75..0.86; the bounds leave room for a routing decision that flips. Q4_K cannot store the
     * fixtures' rows of 64..192 weights (see the refusal test).
     */
    @Test
    void accuracyAgainstTheStoredExpertsOnEveryFixture() throws IOException {
        for (String fixture : Fixtures.MODELS) {
            Path dir = copy(fixture);
            float[] ref;
            int vocab;
            int[] tokens;
            try (LoadedModel m = load(dir, null)) {
                vocab = m.config().vocabSize();
                tokens = QuantAccuracy.tokens(64, vocab, 1);
                ref = QuantAccuracy.logits(m, tokens);
            }
            for (DType dt : new DType[] {DType.Q8_0, DType.Q4_0}) {
                try (LoadedModel m = load(dir, dt)) {
                    QuantAccuracy.Result r = QuantAccuracy.compare(ref, QuantAccuracy.logits(m, tokens), vocab);
                    System.out.printf("%s %s: mean KL %.3g, max KL %.3g, top-1 %.3f%n", fixture, dt, r.meanKl(), r.maxKl(), r.top1Agreement());
                    if (dt == DType.Q8_0) {
                        assertThat(r.meanKl()).as("%s %s", fixture, dt).isLessThan(5e-3);
                        assertThat(r.top1Agreement()).as("%s %s", fixture, dt).isGreaterThanOrEqualTo(0.95);
                    } else {
                        assertThat(r.meanKl()).as("%s %s", fixture, dt).isLessThan(0.1);
                        assertThat(r.top1Agreement()).as("%s %s", fixture, dt).isGreaterThanOrEqualTo(0.7);
                    }
                }
            }
        }
    }

    @Test
    void expertsWithBiasesAreNotConverted() throws IOException {
        Path dir = copy("gpt_oss");
        ModelConfig cfg = config(dir);
        assertThatThrownBy(() -> load(dir, DType.Q8_0)).isInstanceOf(IllegalArgumentException.class)
                .hasMessage("GptOssForCausalLM: its experts are computed on as stored (MXFP4 with biases); --expert-dtype does not apply");
        // a worker opens the cache directly: refused the same way, before anything is written
        assertThatThrownBy(() -> QuantizedExperts.open(dir, cfg, DType.Q8_0, QuantizedExperts.CacheOptions.defaults()
                .withFallbackDir(tmp.resolve("fb")))).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("MXFP4 with biases");
        assertThat(dir.resolve(".epserve-cache")).doesNotExist();
    }

    @Test
    void fallsBackWhenTheModelDirectoryCannotHoldTheCache() throws IOException {
        Path dir = copy("olmoe");
        Files.writeString(dir.resolve(".epserve-cache"), "a file where the cache folder would go");
        Path fallback = tmp.resolve("fallback");
        ModelConfig cfg = config(dir);
        QuantizedExperts.CacheOptions o = QuantizedExperts.CacheOptions.defaults().withFallbackDir(fallback);
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.Q4_0, o)) {
            assertThat(q.built()).isTrue();
            assertThat(q.path().getParent()).isEqualTo(fallback);
        }
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.Q4_0, o)) {
            assertThat(q.built()).isFalse();
            assertThat(q.path().getParent()).isEqualTo(fallback);
        }
    }

    @Test
    void aStaleOrBrokenCacheIsRebuilt() throws IOException {
        Path dir = copy("qwen2_moe");
        ModelConfig cfg = config(dir);
        QuantizedExperts.CacheOptions o = QuantizedExperts.CacheOptions.defaults().withFallbackDir(tmp.resolve("fb"));
        Path file;
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.Q8_0, o)) {
            file = q.path();
        }
        Files.write(file, new byte[] {1, 2, 3});
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.Q8_0, o)) {
            assertThat(q.built()).isTrue();
            assertThat(q.expert(1, 0).gate().dtype()).isEqualTo(DType.Q8_0);
        }
        // another checkpoint content under the same header: the key changes, a new file is written
        try (Checkpoint c = Checkpoint.open(dir)) {
            String before = SourceKey.of(c);
            Path st = dir.resolve("model.safetensors");
            byte[] b = Files.readAllBytes(st);
            b[b.length - 1] ^= 1;
            Files.write(st, b);
            assertThat(SourceKey.of(c)).isNotEqualTo(before);
        }
    }

    @Test
    void concurrentOpenersInOneProcessBuildOnce() throws Exception {
        Path dir = copy("deepseek_v3");
        ModelConfig cfg = config(dir);
        QuantizedExperts.CacheOptions o = QuantizedExperts.CacheOptions.defaults().withFallbackDir(tmp.resolve("fb"));
        ExecutorService ex = Executors.newFixedThreadPool(4);
        try {
            List<Future<QuantizedExperts>> fs = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                fs.add(ex.submit((Callable<QuantizedExperts>) () -> QuantizedExperts.open(dir, cfg, DType.Q4_0, o)));
            }
            int built = 0;
            List<QuantizedExperts> qs = new ArrayList<>();
            for (Future<QuantizedExperts> f : fs) {
                qs.add(f.get());
            }
            for (QuantizedExperts q : qs) {
                built += q.built() ? 1 : 0;
                assertThat(q.path()).isEqualTo(qs.get(0).path());
                assertThat(q.expert(2, 5).up().data().mismatch(qs.get(0).expert(2, 5).up().data())).isEqualTo(-1);
            }
            assertThat(built).isEqualTo(1);
            qs.forEach(QuantizedExperts::close);
        } finally {
            ex.shutdownNow();
        }
    }

    /** Two JVMs open the same missing cache at once: one writes it, the other maps the result. */
    @Test
    void concurrentProcessesBuildOnce() throws Exception {
        Path dir = copy("mixtral");
        String java = ProcessHandle.current().info().command().orElse("java");
        List<Process> ps = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            ps.add(new ProcessBuilder(java, "--add-modules", "jdk.incubator.vector", "-cp", System.getProperty("java.class.path"),
                    CacheProcessMain.class.getName(), dir.toString(), "q4_0").redirectErrorStream(true).start());
        }
        List<String> outs = new ArrayList<>();
        for (Process p : ps) {
            String out = new String(p.getInputStream().readAllBytes()).trim();
            assertThat(p.waitFor()).as(out).isZero();
            outs.add(out.lines().filter(l -> l.startsWith("built=")).findFirst().orElseThrow(() -> new AssertionError(out)));
        }
        assertThat(outs.stream().filter(l -> l.startsWith("built=true")).count()).as(outs.toString()).isEqualTo(1);
        assertThat(outs.get(0).substring(outs.get(0).indexOf(' '))).isEqualTo(outs.get(1).substring(outs.get(1).indexOf(' ')));
    }

    @Test
    void perTensorMappingMapsOnlyTheExpertsAskedFor() throws IOException {
        Path dir = copy("olmoe");
        ModelConfig cfg = config(dir);
        QuantizedExperts.CacheOptions o = QuantizedExperts.CacheOptions.defaults().withFallbackDir(tmp.resolve("fb"));
        QuantizedExperts.open(dir, cfg, DType.Q8_0, o).close();
        try (QuantizedExperts q = QuantizedExperts.open(dir, cfg, DType.Q8_0, o.withMapping(SafetensorsFile.Mapping.PER_TENSOR))) {
            assertThat(q.mappedBytes()).isZero();
            ExpertWeights w = q.expert(0, 1);
            assertThat(q.mappedBytes()).isEqualTo(w.bytes());
            assertThat(q.bytes()).isEqualTo(w.bytes() * cfg.numExperts() * cfg.sparseLayerCount());
        }
    }

    static ModelConfig config(Path dir) {
        try (Checkpoint c = Checkpoint.open(dir, SafetensorsFile.Mapping.PER_TENSOR)) {
            return ModelConfig.from(c.config());
        }
    }
}
