package io.epserve.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.format.Checkpoint;
import io.epserve.format.gguf.GgufModel;
import io.epserve.model.Generator;
import io.epserve.model.LoadedModel;
import io.epserve.model.sampling.SamplingParams;
import io.epserve.model.tokenizer.StreamingDecoder;
import io.epserve.model.tokenizer.Tokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code epserve generate}: prefill a prompt, then decode through the KV cache, streaming text. */
@Command(name = "generate", mixinStandardHelpOptions = true,
        description = {"Generate text from a prompt (or token ids), streaming it as it is produced, then print the "
                + "prompt (prefill) and generation (decode) speed in tokens/s. Sampling defaults come from the "
                + "model's generation_config.json, else temperature 1. With --json, prints one object: "
                + "{\"tokens\": [...], \"generated\": [...], \"text\": \"...\", \"prefill_tokens_per_s\": x, \"decode_tokens_per_s\": y}."})
final class GenerateCommand implements Callable<Integer> {
    static final String DEFAULT_PROMPT = "The experts of a mixture";

    @Mixin
    ModelOptions model;

    static final class Input {
        @Option(names = "--prompt", paramLabel = "TEXT", description = "Prompt text (default: \"" + DEFAULT_PROMPT + "\").")
        String prompt;

        @Option(names = "--tokens", split = ",", paramLabel = "IDS", description = "Prompt as comma-separated token ids (no BOS added).")
        int[] tokens;
    }

    @ArgGroup(exclusive = true)
    Input input = new Input();

    @Option(names = "--max-tokens", defaultValue = "64", description = "Tokens to generate at most (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", description = "0 = greedy (ties to the lowest id). Default: generation_config.json, else 1.")
    Double temperature;

    @Option(names = "--top-k", description = "Keep the k most likely tokens (0 = off). Default: generation_config.json, else off.")
    Integer topK;

    @Option(names = "--top-p", description = "Nucleus: keep the most likely tokens up to this mass (1 = off). Default: generation_config.json, else off.")
    Double topP;

    @Option(names = "--min-p", defaultValue = "0", description = "Drop tokens below min-p × the top probability (0 = off).")
    double minP;

    @Option(names = "--seed", description = "Seed of the sampler: the same seed gives the same tokens. Default: random.")
    Long seed;

    @Option(names = "--ignore-eos", description = "Keep generating after an end-of-sequence token.")
    boolean ignoreEos;

    @Option(names = "--json", description = "Print one JSON object instead of streaming text.")
    boolean json;

    @Override
    public Integer call() throws Exception {
        TerminalProgress progress = TerminalProgress.forStderr();
        Path dir = model.resolveModelDir(progress);
        Tokenizer tokenizer = Files.exists(dir.resolve("tokenizer.json")) || GgufModel.isGguf(dir) ? Tokenizer.load(dir) : null;
        int[] prompt;
        if (input.tokens != null) {
            prompt = input.tokens;
        } else {
            if (tokenizer == null) {
                throw new Main.UsageError(dir + " has no tokenizer.json: give the prompt as --tokens");
            }
            String text = input.prompt != null ? input.prompt : DEFAULT_PROMPT;
            prompt = tokenizer.encodeWithSpecial(text);
        }
        SamplingParams params = samplingParams(dir);
        try (LoadedModel m = model.load(dir, progress)) {
            Set<Integer> eos = new HashSet<>(m.config().eosTokenIds());
            if (tokenizer != null) {
                eos.addAll(tokenizer.eosIds());
            }
            PrintStream out = System.out;
            StreamingDecoder decoder = tokenizer == null ? null : tokenizer.streamingDecoder(true);
            StringBuilder text = new StringBuilder();
            Generator.Result r = Generator.generate(m.transformer(), prompt, maxTokens, params, ignoreEos, eos, token -> {
                if (decoder != null) {
                    String piece = decoder.push(token);
                    text.append(piece);
                    if (!json) {
                        out.print(piece);
                        out.flush();
                    }
                }
            });
            if (decoder != null) {
                String rest = decoder.flush();
                text.append(rest);
                if (!json) {
                    out.print(rest);
                }
            }
            if (json) {
                ObjectMapper om = new ObjectMapper();
                ObjectNode o = om.createObjectNode();
                var tokens = o.putArray("tokens");
                for (int t : r.prompt()) {
                    tokens.add(t);
                }
                var gen = o.putArray("generated");
                for (int t : r.generated()) {
                    gen.add(t);
                }
                o.put("text", text.toString());
                o.put("finish_reason", r.finish() == Generator.Finish.STOP ? "stop" : "length");
                o.put("prefill_tokens_per_s", r.prefillTokensPerSecond());
                o.put("decode_tokens_per_s", r.decodeTokensPerSecond());
                out.println(om.writeValueAsString(o));
            } else {
                out.println();
                System.err.printf("prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s%n",
                        r.prompt().length, r.prefillTokensPerSecond(), r.generated().length, r.decodeTokensPerSecond());
            }
            out.flush();
            model.printStats(m, System.err);
        }
        return 0;
    }

    /** Command-line values first, then generation_config.json, then neutral defaults (as vLLM does). */
    private SamplingParams samplingParams(Path dir) {
        JsonNode gc = null;
        Path f = dir.resolve("generation_config.json");
        if (Files.exists(f)) {
            gc = Checkpoint.readJson(f);
        }
        boolean sample = gc == null || gc.path("do_sample").asBoolean(true);
        double t = temperature != null ? temperature : gc != null && sample && gc.has("temperature") ? gc.get("temperature").asDouble() : 1.0;
        int k = topK != null ? topK : gc != null && sample && gc.has("top_k") ? gc.get("top_k").asInt() : 0;
        double p = topP != null ? topP : gc != null && sample && gc.has("top_p") ? gc.get("top_p").asDouble() : 1.0;
        long s = seed != null ? seed : System.nanoTime();
        return new SamplingParams(t, k, p, minP, s);
    }
}
