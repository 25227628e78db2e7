package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Arrays;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * One layer's attention block ({@code o_proj(attn(xn))}) against HF's {@code self_attn} module over
 * a prefill at positions 0..T-1 with a causal mask and no cache. Covers, by fixture: GQA
 * (mixtral, mixtral_f32), GQA with q/k/v bias (qwen2_moe), per-head q/k RMSNorm (qwen3_moe),
 * q/k RMSNorm over the whole projection (olmoe), MLA with q_lora_rank and interleaved RoPE
 * (deepseek_v3), MLA with a plain q_proj, YaRN frequencies and DeepSeek's mscale² softmax scale
 * (deepseek_v3_nolora_yarn).
 *
 * <p>Tolerance: 1e-4 + 1e-4·|ref| (outputs are O(1); float32 projections, RoPE and softmax
 * against a float64 reference). Prefill and token-by-token decode through the KV cache are
 * compared to 1e-5 + 1e-5·|x|: same float32 arithmetic, only the summation split differs.
 */
class LayerGoldenAttentionTest {
    static final double ATOL = 1e-4;
    static final double RTOL = 1e-4;
    static final double DECODE_TOL = 1e-5;

    static Stream<String> models() {
        return LayerGoldens.models();
    }

    @ParameterizedTest
    @MethodSource("models")
    void prefillMatchesReference(String name) {
        JsonNode g = LayerGoldens.read(name, "attention.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            int layer = g.get("layer").asInt();
            int h = m.config().hidden();
            float[] xn = LayerGoldens.floats(g.get("input"));
            int n = xn.length / h;
            assertThat(g.get("positions").get(0).asInt()).isZero();
            KvCache cache = m.transformer().newCache(n);
            float[] out = new float[n * h];
            m.transformer().attention(layer, cache, 0, n, xn, out);
            cache.advance(n);
            LayerGoldens.assertClose(name + " attention layer " + layer, out, LayerGoldens.doubles(g.get("output")), ATOL, RTOL);
        }
    }

    @ParameterizedTest
    @MethodSource("models")
    void prefillEqualsDecodeThroughTheCache(String name) {
        JsonNode g = LayerGoldens.read(name, "attention.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            int h = m.config().hidden();
            float[] xn = LayerGoldens.floats(g.get("input"));
            int n = xn.length / h;
            for (int layer = 0; layer < m.config().layers(); layer++) {
                KvCache prefillCache = m.transformer().newCache(n);
                float[] prefill = new float[n * h];
                m.transformer().attention(layer, prefillCache, 0, n, xn, prefill);
                prefillCache.advance(n);

                KvCache decodeCache = m.transformer().newCache(1);  // grows as it goes
                float[] decode = new float[n * h];
                float[] row = new float[h];
                for (int i = 0; i < n; i++) {
                    assertThat(decodeCache.length()).isEqualTo(i);
                    m.transformer().attention(layer, decodeCache, i, 1, Arrays.copyOfRange(xn, i * h, (i + 1) * h), row);
                    decodeCache.advance(1);
                    System.arraycopy(row, 0, decode, i * h, h);
                }
                double[] want = new double[prefill.length];
                for (int i = 0; i < want.length; i++) {
                    want[i] = prefill[i];
                }
                LayerGoldens.assertClose(name + " layer " + layer + " decode vs prefill", decode, want, DECODE_TOL, DECODE_TOL);
            }
        }
    }
}
