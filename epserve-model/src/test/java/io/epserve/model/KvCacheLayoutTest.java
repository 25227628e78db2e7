package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The KV cache's layouts compute the same function: MLA's compressed latent cache (with the
 * up-projections absorbed) against the expanded per-head keys and values over a long context,
 * and a bfloat16 cache against float32 at half the memory.
 */
class KvCacheLayoutTest {

    static float[] logits(String name, KvOptions kv, int[] tokens) {
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults().withValidate(false).withKv(kv))) {
            MoeTransformer t = m.transformer();
            return t.forward(t.newCache(tokens.length), tokens, tokens.length, true, RoutingListener.NONE);
        }
    }

    static int[] randomTokens(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(256);
        }
        return t;
    }

    static double maxDiff(float[] a, float[] b) {
        assertThat(a).hasSameSizeAs(b);
        double d = 0;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
        }
        return d;
    }

    @Test
    void compressedMlaMatchesTheExpandedCacheOver4096Tokens() {
        // the shared DeepSeek-V3 fixture allows exactly 4096 positions
        int[] tokens = randomTokens(4096, 7);
        KvOptions expanded = KvOptions.defaults().withMla(KvOptions.MlaCache.EXPANDED);
        float[] want = logits("deepseek_v3", expanded, tokens);
        float[] got = logits("deepseek_v3", KvOptions.defaults(), tokens);
        assertThat(maxDiff(got, want)).as("max |Δlogit| over 4096 positions").isLessThan(1e-4);
    }

    @ParameterizedTest
    @ValueSource(strings = {"deepseek_v2", "deepseek_v2_lite"})
    void compressedMlaMatchesTheExpandedCacheOnDeepSeekV2(String name) {
        int[] tokens = randomTokens(300, 11);
        float[] want = logits(name, KvOptions.defaults().withMla(KvOptions.MlaCache.EXPANDED), tokens);
        assertThat(maxDiff(logits(name, KvOptions.defaults(), tokens), want)).isLessThan(1e-4);
    }

    @Test
    void theCompressedCacheHoldsTheLatentAndTheRopeKeyPerTokenAndLayer() {
        try (LoadedModel m = LoadedModel.load(Fixtures.model("deepseek_v3"), LoadedModel.Options.defaults().withValidate(false))) {
            ModelConfig.Mla mla = m.config().mla();
            KvLayout l = m.transformer().kvLayout();
            assertThat(l.sharedRows()).isTrue();
            assertThat(l.keyStride()).isEqualTo(mla.kvLoraRank() + mla.qkRopeDim());
            assertThat(l.bytesPerToken()).isEqualTo((long) (mla.kvLoraRank() + mla.qkRopeDim()) * m.config().layers() * 4);
            KvLayout expanded = KvLayout.of(m.config(), KvOptions.defaults().withMla(KvOptions.MlaCache.EXPANDED));
            assertThat(expanded.bytesPerToken()).isEqualTo((long) m.config().heads() * (mla.qkHeadDim() + mla.vHeadDim())
                    * m.config().layers() * 4);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"mixtral", "qwen3_moe", "deepseek_v3", "deepseek_v2"})
    void aBf16CacheHalvesTheMemoryAndKeepsTheLogitsClose(String name) {
        // the fixture's own prompt: its routing decisions are clear, so rounding moves no expert choice
        int[] tokens = Fixtures.ints(Fixtures.expected(name).get("cases").get(0).get("tokens"));
        KvOptions bf16 = KvOptions.defaults().withDtype(KvDtype.BF16);
        float[] want = logits(name, KvOptions.defaults(), tokens);
        float[] got = logits(name, bf16, tokens);
        // bf16 keeps 8 significant bits: keys and values move by up to 2^-9 relative
        assertThat(maxDiff(got, want)).as("%s max |Δlogit| with a bf16 cache", name).isLessThan(0.1).isGreaterThan(0);
        try (LoadedModel m = LoadedModel.load(Fixtures.model(name), LoadedModel.Options.defaults().withValidate(false).withKv(bf16))) {
            KvLayout f32 = KvLayout.of(m.config(), KvOptions.defaults());
            assertThat(m.transformer().kvLayout().bytesPerToken() * 2).isEqualTo(f32.bytesPerToken());
            KvCache c = m.transformer().newCache(4);
            assertThat(c.dtype()).isEqualTo(KvDtype.BF16);
            assertThatThrownBy(() -> c.keys(0)).isInstanceOf(UnsupportedOperationException.class);
        }
    }

    @Test
    void aCacheOfAnotherLayoutIsRefused() {
        try (LoadedModel m = LoadedModel.load(Fixtures.model("mixtral"), LoadedModel.Options.defaults().withValidate(false))) {
            KvCache bf16 = new ContiguousKvCache(KvLayout.of(m.config(), KvOptions.defaults().withDtype(KvDtype.BF16)), 4);
            assertThatThrownBy(() -> m.transformer().forward(bf16, new int[] {1, 2}, 2, false, RoutingListener.NONE))
                    .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("does not fit");
        }
    }

    @Test
    void kvDtypeParsesItsNames() {
        assertThat(KvDtype.parse("BF16")).isEqualTo(KvDtype.BF16);
        assertThat(KvDtype.parse("f32")).isEqualTo(KvDtype.F32);
        assertThatThrownBy(() -> KvDtype.parse("q8_0")).hasMessageContaining("'q8_0'");
    }
}
