package io.epserve.operator;

import static org.assertj.core.api.Assertions.fail;

import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.status.FrontendProbe;
import io.epserve.operator.status.FrontendReport;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinitionBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import io.javaoperatorsdk.operator.Operator;
import io.javaoperatorsdk.operator.processing.dependent.workflow.CRDPresentActivationCondition;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.HttpURLConnection;
import java.net.URI;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.logging.Level;
import java.util.logging.Logger;
import java.util.function.Predicate;
import java.util.function.Supplier;
import java.util.function.UnaryOperator;

/**
 * The operator, exactly as {@link EpServeOperator#create} builds it, against a fabric8 mock API server in CRUD
 * mode (objects are stored, listed, watched and patched as by a real one; no controllers run, so nothing schedules
 * pods or collects garbage). The EpServe CRD installed is the one the build generated.
 */
final class OperatorHarness implements AutoCloseable {
    static final String NAMESPACE = "serving";
    static final Duration DEADLINE = Duration.ofSeconds(20);

    final KubernetesMockServer server;
    final KubernetesClient client;
    final Operator operator;
    final ScriptedProbe probe = new ScriptedProbe();
    final TestClock clock = new TestClock(Instant.parse("2026-01-01T00:00:00Z"));
    // The mock server logs every request and JOSDK every start and stop at INFO, and JOSDK each failed reconciliation
    // with its stack trace at WARNING: the tests cause some on purpose and assert on their outcome instead. Held here
    // so the loggers (and their levels) outlive each harness.
    private static final Map<Logger, Level> QUIETED = Map.of(Logger.getLogger("io.fabric8.mockwebserver"), Level.WARNING,
            Logger.getLogger("io.javaoperatorsdk"), Level.WARNING,
            Logger.getLogger("io.javaoperatorsdk.operator.processing.event"), Level.SEVERE);

    static {
        QUIETED.forEach(Logger::setLevel);
    }

    OperatorHarness(boolean serviceMonitorCrd) {
        server = new KubernetesMockServer(new Context(), new MockWebServer(), new HashMap<>(),
                new KubernetesCrudDispatcher(List.of()), false);
        server.init();
        client = server.createClient();
        client.resource(generatedCrd()).create();
        if (serviceMonitorCrd) {
            client.resource(serviceMonitorCrd()).create();
        }
        // The activation condition caches CRD presence per JVM; each harness starts from what it installed.
        CRDPresentActivationCondition.clearState();
        operator = EpServeOperator.create(server.createClient(), probe, clock);
        operator.start();
    }

    static CustomResourceDefinition generatedCrd() {
        try (InputStream in = OperatorHarness.class.getResourceAsStream("/META-INF/fabric8/epserves.epserve.io-v1.yml")) {
            if (in == null) {
                throw new IllegalStateException("the build did not generate the EpServe CRD");
            }
            return Serialization.unmarshal(in, CustomResourceDefinition.class);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static CustomResourceDefinition serviceMonitorCrd() {
        return new CustomResourceDefinitionBuilder().withNewMetadata().withName("servicemonitors.monitoring.coreos.com")
                .endMetadata().withNewSpec().withGroup("monitoring.coreos.com").withScope("Namespaced")
                .withNewNames().withKind("ServiceMonitor").withPlural("servicemonitors").withSingular("servicemonitor")
                .endNames()
                .addNewVersion().withName("v1").withServed(true).withStorage(true).endVersion()
                .endSpec().build();
    }

    EpServe create(EpServe resource) {
        resource.getMetadata().setNamespace(NAMESPACE);
        return client.resource(resource).create();
    }

    /**
     * Edits the spec as {@code kubectl edit} does: read, change, write with the version read, and again from the top
     * when the operator's status write got in between (409 Conflict).
     */
    void editSpec(String name, UnaryOperator<EpServeSpec> change) {
        Instant deadline = Instant.now().plus(DEADLINE);
        while (true) {
            EpServe r = get(name);
            r.setSpec(change.apply(r.getSpec()));
            try {
                client.resource(r).update();
                return;
            } catch (KubernetesClientException e) {
                if (e.getCode() != HttpURLConnection.HTTP_CONFLICT || Instant.now().isAfter(deadline)) {
                    throw e;
                }
            }
        }
    }

    EpServe get(String name) {
        return client.resources(EpServe.class).inNamespace(NAMESPACE).withName(name).get();
    }

    <T extends HasMetadata> T get(Class<T> type, String name) {
        return client.resources(type).inNamespace(NAMESPACE).withName(name).get();
    }

    /** Waits for an object to exist and satisfy {@code until}; fails naming it at the deadline. */
    <T extends HasMetadata> T await(Class<T> type, String name, Predicate<T> until) {
        return await(type.getSimpleName() + " " + name, () -> get(type, name), until);
    }

    static <T> T await(String what, Supplier<T> read, Predicate<T> until) {
        Instant deadline = Instant.now().plus(DEADLINE);
        T last = null;
        while (Instant.now().isBefore(deadline)) {
            last = read.get();
            if (last != null && until.test(last)) {
                return last;
            }
            try {
                Thread.sleep(50); // poll interval of the condition, not a wait for state
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        return fail("timed out after %s waiting for %s; last seen: %s", DEADLINE, what, last);
    }

    /** Checks that {@code condition} stays true for the whole of {@code span} (a "nothing happens" assertion). */
    static void holds(String what, Duration span, BooleanSupplier condition) {
        Instant end = Instant.now().plus(span);
        while (Instant.now().isBefore(end)) {
            if (!condition.getAsBoolean()) {
                fail("%s stopped holding within %s", what, span);
            }
            try {
                Thread.sleep(50); // poll interval of the condition
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    @Override
    public void close() {
        operator.stop();
        client.close();
        server.destroy();
    }

    /** Answers what the test scripted and remembers which frontends it was asked about. */
    static final class ScriptedProbe implements FrontendProbe {
        final AtomicReference<FrontendReport> report = new AtomicReference<>(FrontendReport.unreachable());
        final List<List<URI>> asked = new CopyOnWriteArrayList<>();
        final AtomicReference<RuntimeException> failure = new AtomicReference<>();

        @Override
        public FrontendReport observe(List<URI> frontends) {
            asked.add(frontends);
            RuntimeException e = failure.get();
            if (e != null) {
                throw e;
            }
            return report.get();
        }
    }

    /** A clock the test moves; counts reads, and the reconciler reads it once per reconciliation. */
    static final class TestClock extends Clock {
        final AtomicReference<Instant> now;
        final AtomicInteger reads = new AtomicInteger();

        TestClock(Instant start) {
            now = new AtomicReference<>(start);
        }

        void advance(Duration d) {
            now.updateAndGet(t -> t.plus(d));
        }

        @Override
        public ZoneId getZone() {
            return ZoneOffset.UTC;
        }

        @Override
        public Clock withZone(ZoneId zone) {
            throw new UnsupportedOperationException("fixed to UTC");
        }

        @Override
        public Instant instant() {
            reads.incrementAndGet();
            return now.get();
        }
    }
}
