package io.epserve.rpc;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.tensor.DType;
import io.epserve.tensor.QuantizedActivations;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

class ModelFingerprintTest {
    private static final Path MODEL = Fixtures.model("mixtral");

    @Test
    void aWorkerUnderTheOtherQuantizedActivationSchemeServesAnotherModel() {
        ModelFingerprint int8 = ModelFingerprint.of(MODEL, DType.Q8_0, QuantizedActivations.INT8);
        ModelFingerprint f32 = ModelFingerprint.of(MODEL, DType.Q8_0, QuantizedActivations.F32);
        assertThat(int8.toString()).startsWith("MixtralForCausalLM;config-sha256=").endsWith(";quant-activations=int8;experts=q8_0");
        assertThat(f32.toString()).endsWith(";quant-activations=f32;experts=q8_0");
        assertThat(int8.toString()).isNotEqualTo(f32.toString());
        assertThat(int8.configSha256()).isEqualTo(f32.configSha256());
        // the process's own scheme is the one its fingerprint states
        assertThat(ModelFingerprint.of(MODEL, null).quantActivations()).isEqualTo(QuantizedActivations.configured().label());
    }
}
