package io.epserve.model.demo;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.CacheFile;
import io.epserve.format.Progress;
import io.epserve.format.SafetensorsWriter;
import io.epserve.model.tokenizer.DemoTokenizer;
import io.epserve.tensor.DType;
import io.epserve.tensor.Numerics;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import java.util.stream.Stream;

/**
 * epserve's built-in demo model: a deterministic random Mixtral-shaped MoE written in exact
 * Hugging Face layout (config.json, model.safetensors, tokenizer.json, ...) into a cache folder
 * on first use, so that every command runs out of the box. Its weights are random, so its text
 * is noise; its shape is the benchmark model of BENCHMARK-REFERENCE.md (hidden 1024, 8 layers,
 * 16/4 heads, 8 experts top-2, FFN 2816, vocab 32000, BF16: 640M parameters, 192M active), so
 * its speed compares with the peers' figures there.
 */
public final class DemoModel {
    private DemoModel() {}

    /** The demo's shape. {@link #STANDARD} is the one the CLI uses; tests may use smaller ones. */
    public record Spec(String name, int hidden, int layers, int heads, int kvHeads, int experts, int topK,
                       int intermediate, int vocab, double ropeTheta, int maxPositions, long seed) {
        public long parameters() {
            long h = hidden;
            long hd = h / heads;
            long attn = h * h * 2 + 2 * h * kvHeads * hd;
            long moe = (long) experts * 3 * h * intermediate + (long) experts * h;
            return 2L * vocab * h + layers * (attn + moe + 2 * h) + h;
        }
    }

    public static final Spec STANDARD = new Spec("demo-mixtral-640m", 1024, 8, 16, 4, 8, 2, 2816, 32000, 1e6, 32768, 20261128L);

    /** A few-MB model of the same architecture, for tests. */
    public static final Spec TINY = new Spec("demo-mixtral-tiny", 64, 2, 4, 2, 8, 2, 96, 512, 1e6, 4096, 7L);

    /** Bump when the files written change, so old caches are rebuilt. */
    static final int FORMAT_VERSION = 1;

    /** The default cache folder: $EPSERVE_CACHE, else $XDG_CACHE_HOME/epserve, else ~/.cache/epserve. */
    public static Path defaultCacheDir() {
        return CacheFile.defaultDir();
    }

    /** The demo model's folder in {@code cacheDir}, written first if missing or incomplete. */
    public static Path ensure(Spec spec, Path cacheDir, Progress progress) {
        Path dir = cacheDir.resolve(spec.name() + "-v" + FORMAT_VERSION);
        if (Files.exists(dir.resolve(".complete"))) {
            return dir;
        }
        try {
            Files.createDirectories(cacheDir);
            Path tmp = Files.createTempDirectory(cacheDir, spec.name() + ".partial-");
            write(spec, tmp, progress);
            Files.writeString(tmp.resolve(".complete"), "epserve demo model, format " + FORMAT_VERSION + "\n");
            try {
                Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
            } catch (IOException raced) {
                deleteTree(tmp); // another process finished first
                if (!Files.exists(dir.resolve(".complete"))) {
                    throw raced;
                }
            }
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the demo model to " + cacheDir + ": " + e.getMessage(), e);
        }
    }

    /** Writes the demo model's files into {@code dir}. */
    public static void write(Spec s, Path dir, Progress progress) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode c = configJson(s);
        Files.writeString(dir.resolve("config.json"), json.writerWithDefaultPrettyPrinter().writeValueAsString(c));
        ObjectNode g = json.createObjectNode();
        g.put("bos_token_id", DemoTokenizer.BOS_ID);
        g.put("eos_token_id", DemoTokenizer.EOS_ID);
        g.put("do_sample", true);
        g.put("temperature", 0.7);
        g.put("top_p", 0.9);
        Files.writeString(dir.resolve("generation_config.json"), json.writerWithDefaultPrettyPrinter().writeValueAsString(g));
        Files.writeString(dir.resolve("tokenizer.json"), DemoTokenizer.tokenizerJson(s.vocab()));
        Files.writeString(dir.resolve("tokenizer_config.json"), DemoTokenizer.tokenizerConfigJson());

        List<SafetensorsWriter.Spec> specs = tensorSpecs(s);
        long total = specs.stream().mapToLong(SafetensorsWriter.Spec::bytes).sum();
        progress.start("writing demo model " + s.name(), total);
        try {
            SafetensorsWriter.write(dir.resolve("model.safetensors"), specs, (i, spec, target) -> {
                if (spec.shape().length == 1) {
                    fillOnes(target);
                } else {
                    fillGaussian(target, s.seed() * 1_000_003L + i, 0.02f, progress);
                }
            });
        } finally {
            progress.done();
        }
    }

    /** The demo's config.json (also what `epserve plan` reads for the demo, without weights). */
    public static ObjectNode configJson(Spec s) {
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

    static List<SafetensorsWriter.Spec> tensorSpecs(Spec s) {
        List<SafetensorsWriter.Spec> t = new ArrayList<>();
        long h = s.hidden();
        long hd = h / s.heads();
        t.add(spec("model.embed_tokens.weight", s.vocab(), h));
        for (int l = 0; l < s.layers(); l++) {
            String p = "model.layers." + l + ".";
            t.add(spec(p + "input_layernorm.weight", h));
            t.add(spec(p + "self_attn.q_proj.weight", s.heads() * hd, h));
            t.add(spec(p + "self_attn.k_proj.weight", s.kvHeads() * hd, h));
            t.add(spec(p + "self_attn.v_proj.weight", s.kvHeads() * hd, h));
            t.add(spec(p + "self_attn.o_proj.weight", h, s.heads() * hd));
            t.add(spec(p + "post_attention_layernorm.weight", h));
            t.add(spec(p + "block_sparse_moe.gate.weight", s.experts(), h));
            for (int e = 0; e < s.experts(); e++) {
                String ep = p + "block_sparse_moe.experts." + e + ".";
                t.add(spec(ep + "w1.weight", s.intermediate(), h));
                t.add(spec(ep + "w2.weight", h, s.intermediate()));
                t.add(spec(ep + "w3.weight", s.intermediate(), h));
            }
        }
        t.add(spec("model.norm.weight", h));
        t.add(spec("lm_head.weight", s.vocab(), h));
        return t;
    }

    private static SafetensorsWriter.Spec spec(String name, long... shape) {
        return new SafetensorsWriter.Spec(name, DType.BF16, shape);
    }

    private static final ValueLayout.OfShort BF16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int CHUNK = 1 << 20;

    private static void fillOnes(MemorySegment target) {
        short one = Numerics.floatToBf16(1f);
        for (long i = 0; i < target.byteSize() / 2; i++) {
            target.set(BF16, i * 2, one);
        }
    }

    /**
     * Approximately N(0, std²), rounded to BF16: the Irwin–Hall sum of the four 16-bit uniforms in
     * one 64-bit random draw (bounded at ±3.46σ), which is an order of magnitude cheaper than exact
     * Gaussians and plenty for a model whose text is noise. Each 1M-element chunk has its own seed,
     * so the file does not depend on the number of threads.
     */
    private static void fillGaussian(MemorySegment target, long seed, float std, Progress progress) {
        long n = target.byteSize() / 2;
        int chunks = (int) ((n + CHUNK - 1) / CHUNK);
        double scale = std / (65536.0 / Math.sqrt(3.0));
        IntStream.range(0, chunks).parallel().forEach(ci -> {
            SplittableRandom r = new SplittableRandom(seed * 31 + ci);
            long from = (long) ci * CHUNK;
            int len = (int) (Math.min(n, from + CHUNK) - from);
            short[] buf = new short[len];
            for (int i = 0; i < len; i++) {
                long x = r.nextLong();
                long sum = (x & 0xFFFF) + ((x >>> 16) & 0xFFFF) + ((x >>> 32) & 0xFFFF) + (x >>> 48);
                buf[i] = Numerics.floatToBf16((float) ((sum - 131070.0) * scale));
            }
            MemorySegment.copy(buf, 0, target, BF16, from * 2, len);
            progress.advance(len * 2L);
        });
    }

    private static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(q);
            }
        }
    }
}
