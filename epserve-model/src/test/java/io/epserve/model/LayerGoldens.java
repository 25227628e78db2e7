package io.epserve.model;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * The layer-level goldens of src/test/resources/goldens (DESIGN.md §3.14): inputs and outputs of
 * single Hugging Face modules (transformers 5.17.0, float64), written by
 * tools/goldens/make_layer_goldens.py, which says exactly which module each file calls.
 * One folder per fixture of ../shared/fixtures, plus {@value #SYNTHETIC}, a tiny DeepSeek-V3
 * checkpoint kept with the goldens (MLA without q_lora_rank, DeepSeek-V3's YaRN rope_scaling).
 */
final class LayerGoldens {
    private LayerGoldens() {}

    static final String SYNTHETIC = "deepseek_v3_nolora_yarn";

    /** Every model with goldens. */
    static Stream<String> models() {
        List<String> all = new ArrayList<>(Fixtures.MODELS);
        all.add(SYNTHETIC);
        return all.stream();
    }

    /** The models that have a given golden file. */
    static Stream<String> modelsWith(String file) {
        return models().filter(m -> LayerGoldens.class.getResource(resource(m, file)) != null);
    }

    private static String resource(String model, String file) {
        return "/goldens/" + model + "/" + file;
    }

    static JsonNode read(String model, String file) {
        try (InputStream in = LayerGoldens.class.getResourceAsStream(resource(model, file))) {
            if (in == null) {
                throw new IllegalStateException("no golden " + resource(model, file));
            }
            return new ObjectMapper().readTree(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The checkpoint directory of a fixture, or of the synthetic model kept with the goldens. */
    static Path modelDir(String model) {
        if (!model.equals(SYNTHETIC)) {
            return Fixtures.model(model);
        }
        URL config = LayerGoldens.class.getResource(resource(model, "model/config.json"));
        try {
            return Path.of(config.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static LoadedModel load(String model) {
        return LoadedModel.load(modelDir(model), LoadedModel.Options.defaults());
    }

    /** A matrix (array of rows) or vector, flattened row-major to float32. */
    static float[] floats(JsonNode rowsOrVector) {
        double[] d = doubles(rowsOrVector);
        float[] f = new float[d.length];
        for (int i = 0; i < d.length; i++) {
            f[i] = (float) d[i];
        }
        return f;
    }

    static double[] doubles(JsonNode rowsOrVector) {
        List<Double> out = new ArrayList<>();
        flatten(rowsOrVector, out);
        double[] d = new double[out.size()];
        for (int i = 0; i < d.length; i++) {
            d[i] = out.get(i);
        }
        return d;
    }

    private static void flatten(JsonNode n, List<Double> out) {
        if (n.isArray()) {
            n.forEach(c -> flatten(c, out));
        } else {
            out.add(n.asDouble());
        }
    }

    /**
     * Asserts {@code |got[i] - want[i]| <= atol + rtol * |want[i]|} everywhere, reporting the
     * worst element. Returns the largest absolute difference (for messages).
     */
    static double assertClose(String what, float[] got, double[] want, double atol, double rtol) {
        assertThat(got.length).as("%s: length", what).isEqualTo(want.length);
        double maxAbs = 0;
        double worstExcess = Double.NEGATIVE_INFINITY;
        int worst = -1;
        for (int i = 0; i < want.length; i++) {
            double d = Math.abs(got[i] - want[i]);
            maxAbs = Math.max(maxAbs, d);
            double excess = d - (atol + rtol * Math.abs(want[i]));
            if (excess > worstExcess || Double.isNaN(d)) {
                worstExcess = Double.isNaN(d) ? Double.POSITIVE_INFINITY : excess;
                worst = i;
            }
        }
        if (worst >= 0) {
            assertThat(worstExcess <= 0)
                    .as("%s: element %d is %s, reference %s (|diff| %.3g > %.1g + %.1g·|ref|; max |diff| %.3g)", what, worst,
                            got[worst], want[worst], Math.abs(got[worst] - want[worst]), atol, rtol, maxAbs)
                    .isTrue();
        }
        return maxAbs;
    }
}
