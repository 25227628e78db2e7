package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import io.epserve.tensor.Kernels;
import io.epserve.tensor.ScalarKernels;
import io.epserve.tensor.Tensor;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * RMSNorm against HF's {@code <Arch>RMSNorm} modules (input_layernorm of layer 0 and the final
 * model.norm) on residual-stream-like rows. Both the kernel the model calls and its scalar twin.
 * Tolerance: 1e-5 + 1e-5·|ref| (float32 vs a float64 reference whose rsqrt HF takes in float32;
 * outputs are O(1..5)).
 */
class LayerGoldenNormTest {
    static final double ATOL = 1e-5;
    static final double RTOL = 1e-5;

    static Stream<String> models() {
        return LayerGoldens.models();
    }

    @ParameterizedTest
    @MethodSource("models")
    void rmsnormMatchesReference(String name) {
        JsonNode g = LayerGoldens.read(name, "rmsnorm.json");
        try (LoadedModel m = LayerGoldens.load(name)) {
            ModelConfig cfg = m.config();
            int h = cfg.hidden();
            for (JsonNode c : g.get("cases")) {
                String module = c.get("module").asText();
                Tensor weight = switch (module) {
                    case "model.layers.0.input_layernorm" -> m.weights().layer(0).inputNorm();
                    case "model.norm" -> m.weights().finalNorm();
                    default -> throw new IllegalStateException(module);
                };
                assertThat(cfg.rmsEps()).as("%s eps", name).isEqualTo((float) c.get("eps").asDouble());
                float[] x = LayerGoldens.floats(c.get("input"));
                double[] want = LayerGoldens.doubles(c.get("output"));
                int rows = x.length / h;
                float[] out = new float[x.length];
                Kernels.rmsnorm(x, 0, rows, h, weight, cfg.rmsEps(), out, 0);
                LayerGoldens.assertClose(name + " " + module, out, want, ATOL, RTOL);
                float[] scalar = new float[x.length];
                ScalarKernels.rmsnorm(x, 0, rows, h, weight, cfg.rmsEps(), scalar, 0);
                LayerGoldens.assertClose(name + " " + module + " (scalar twin)", scalar, want, ATOL, RTOL);
            }
        }
    }
}
