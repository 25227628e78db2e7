package io.epserve.cli;

import com.fasterxml.jackson.core.JsonEncoding;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import io.epserve.model.KvCache;
import io.epserve.model.LoadedModel;
import io.epserve.moe.RoutingResult;
import java.io.IOException;
import java.io.PrintStream;
import java.util.Arrays;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code epserve logits}: one forward pass over given tokens; prints logits and routing. */
@Command(name = "logits", mixinStandardHelpOptions = true,
        description = {"Run one forward pass over token ids and print the logits of every position and the "
                + "routing of every sparse layer. With --json: {\"tokens\": [...], \"logits\": [[vocab floats] per "
                + "position], \"routing\": [{\"layer\": L, \"experts\": [[k ids] per token], \"weights\": [[k floats] per token]}]}."})
final class LogitsCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--tokens", required = true, split = ",", paramLabel = "IDS", description = "Comma-separated token ids, from position 0.")
    int[] tokens;

    @Option(names = "--json", description = "Print one JSON object (see above).")
    boolean json;

    @Option(names = "--top", defaultValue = "5", description = "Without --json: how many of the largest logits to show per position (default ${DEFAULT-VALUE}).")
    int top;

    @Override
    public Integer call() throws IOException {
        TerminalProgress progress = TerminalProgress.forStderr();
        try (LoadedModel m = model.load(model.resolveModelDir(progress), progress)) {
            TreeMap<Integer, RoutingResult> routing = new TreeMap<>();
            KvCache cache = m.transformer().newCache(tokens.length);
            float[] logits = m.transformer().forward(cache, tokens, tokens.length, true, routing::put);
            int vocab = m.config().vocabSize();
            PrintStream out = System.out;
            if (json) {
                writeJson(out, logits, vocab, routing);
            } else {
                for (int p = 0; p < tokens.length; p++) {
                    out.printf("position %d token %d:", p, tokens[p]);
                    boolean[] used = new boolean[vocab];
                    for (int j = 0; j < Math.min(top, vocab); j++) {
                        int best = -1;
                        for (int v = 0; v < vocab; v++) {
                            if (!used[v] && (best < 0 || logits[p * vocab + v] > logits[p * vocab + best])) {
                                best = v;
                            }
                        }
                        used[best] = true;
                        out.printf("  %d=%.4f", best, logits[p * vocab + best]);
                    }
                    out.println();
                }
                routing.forEach((layer, r) -> {
                    out.printf("layer %d experts:", layer);
                    for (int t = 0; t < r.tokens(); t++) {
                        out.print(" " + Arrays.toString(r.expertsOf(t)));
                    }
                    out.println();
                });
            }
            out.flush();
            model.printStats(m, System.err);
        }
        return 0;
    }

    private void writeJson(PrintStream out, float[] logits, int vocab, TreeMap<Integer, RoutingResult> routing) throws IOException {
        try (JsonGenerator g = new JsonFactory().createGenerator(out, JsonEncoding.UTF8)) {
            g.configure(JsonGenerator.Feature.AUTO_CLOSE_TARGET, false);
            g.writeStartObject();
            g.writeArrayFieldStart("tokens");
            for (int t : tokens) {
                g.writeNumber(t);
            }
            g.writeEndArray();
            g.writeArrayFieldStart("logits");
            for (int p = 0; p < tokens.length; p++) {
                g.writeStartArray();
                for (int v = 0; v < vocab; v++) {
                    g.writeNumber(logits[p * vocab + v]);
                }
                g.writeEndArray();
            }
            g.writeEndArray();
            g.writeArrayFieldStart("routing");
            for (var e : routing.entrySet()) {
                RoutingResult r = e.getValue();
                g.writeStartObject();
                g.writeNumberField("layer", e.getKey());
                g.writeArrayFieldStart("experts");
                for (int t = 0; t < r.tokens(); t++) {
                    g.writeStartArray();
                    for (int j = 0; j < r.k(); j++) {
                        g.writeNumber(r.expert(t, j));
                    }
                    g.writeEndArray();
                }
                g.writeEndArray();
                g.writeArrayFieldStart("weights");
                for (int t = 0; t < r.tokens(); t++) {
                    g.writeStartArray();
                    for (int j = 0; j < r.k(); j++) {
                        g.writeNumber(r.weight(t, j));
                    }
                    g.writeEndArray();
                }
                g.writeEndArray();
                g.writeEndObject();
            }
            g.writeEndArray();
            g.writeEndObject();
        }
        out.println();
    }
}
