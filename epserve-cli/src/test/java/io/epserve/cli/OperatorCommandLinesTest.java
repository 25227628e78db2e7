package io.epserve.cli;

import static org.assertj.core.api.Assertions.assertThat;

import io.epserve.operator.Commands;
import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.api.ExpertDtype;
import io.epserve.operator.api.ModelSource;
import io.epserve.operator.api.SecretKeyRef;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.ParseResult;

/**
 * The command lines the operator puts into worker and frontend pods parse as this CLI's commands, with every
 * option landing where it should: a renamed flag fails here instead of in a crash-looping pod.
 */
class OperatorCommandLinesTest {

    private static EpServeConfig config() {
        EpServe r = new EpServe();
        r.setMetadata(new ObjectMetaBuilder().withName("mixtral").withNamespace("serving").build());
        r.setSpec(new EpServeSpec(null, new ModelSource("models", null, "mixtral"), ExpertDtype.Q4_K, null, null, "8GiB", null,
                null, null, null, new SecretKeyRef("auth", null)));
        return ((EpServeConfig.Check.Valid) EpServeConfig.check(r)).config();
    }

    private static ParseResult parse(List<String> args) {
        return new CommandLine(new Main()).parseArgs(args.toArray(String[]::new)).subcommand();
    }

    @Test
    void workerCommandParses() {
        ParseResult worker = parse(Commands.worker(config()));
        assertThat(worker.commandSpec().name()).isEqualTo("worker");
        assertThat(worker.matchedOptionValue("--listen", "")).isEqualTo("0.0.0.0:" + Names.WORKER_PORT);
        assertThat(worker.matchedOptionValue("--model", null).toString()).isEqualTo("/models/mixtral");
        assertThat(worker.matchedOptionValue("--expert-dtype", "")).isEqualTo("q4_k");
        assertThat(worker.matchedOptionValue("--auth-secret-file", null).toString()).isEqualTo("/etc/epserve/auth/secret");
        assertThat(worker.unmatched()).isEmpty();
    }

    @Test
    void frontendCommandParsesOnceTheKubeletExpandsTheWorkerList() {
        EpServeConfig c = config();
        String workers = String.join(",", Names.workerAddresses(c, 2));
        List<String> args = Commands.frontend(c).stream()
                .map(a -> a.equals("$(" + Commands.WORKERS_ENV + ")") ? workers : a).toList();
        ParseResult serve = parse(args);
        assertThat(serve.commandSpec().name()).isEqualTo("serve");
        assertThat(serve.matchedOptionValue("--port", 0)).isEqualTo(Names.FRONTEND_PORT);
        assertThat(serve.matchedOptionValue("--host", "")).isEqualTo("0.0.0.0");
        assertThat(serve.matchedOptionValue("--kv-memory", "")).isEqualTo("8GiB");
        assertThat(serve.matchedOptionValue("--model", null).toString()).isEqualTo("/models/mixtral");
        assertThat(serve.matchedOptionValue("--workers", List.<String>of()))
                .containsExactly("mixtral-worker-0.mixtral-worker.serving.svc:7070", "mixtral-worker-1.mixtral-worker.serving.svc:7070");
        assertThat(serve.matchedOptionValue("--expert-dtype", "")).isEqualTo("q4_k");
        assertThat(serve.matchedOptionValue("--worker-secret-file", null).toString()).isEqualTo("/etc/epserve/auth/secret");
        assertThat(serve.unmatched()).isEmpty();
    }
}
