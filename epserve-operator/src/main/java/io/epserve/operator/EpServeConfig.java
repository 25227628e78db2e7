package io.epserve.operator;

import io.epserve.operator.api.Autoscaling;
import io.epserve.operator.api.EpServe;
import io.epserve.operator.api.EpServeSpec;
import io.epserve.operator.api.ExpertDtype;
import io.epserve.operator.api.ModelSource;
import io.epserve.operator.api.Rebalancing;
import io.epserve.operator.api.RoleResources;
import io.epserve.operator.api.SecretKeyRef;
import io.epserve.operator.api.WorkerRange;
import io.fabric8.kubernetes.api.model.ResourceRequirements;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.regex.Pattern;

/**
 * An {@link EpServe} spec checked once and with every default filled in; the dependent resources read only this.
 * {@link #check} returns every problem at once (each naming its field), so one status update tells the whole story.
 */
public record EpServeConfig(
        String name,
        String namespace,
        String image,
        Model model,
        Optional<ExpertDtype> expertDtype,
        int frontends,
        Optional<String> kvMemory,
        int minWorkers,
        int maxWorkers,
        int redundantExperts,
        RebalancePolicy rebalancing,
        ResourceRequirements frontendResources,
        ResourceRequirements workerResources,
        ScalingPolicy scaling,
        Optional<AuthSecret> authSecret) {

    /** The image frontends and workers run when the spec names none: the one built with this operator. */
    public static final String DEFAULT_IMAGE = "ghcr.io/epserve/epserve:" + OperatorVersion.get();
    public static final int DEFAULT_FRONTENDS = 1;
    /** Workers are fenced to one frontend (the one holding their lease); see the worker's --lease-timeout. */
    public static final int MAX_FRONTENDS = 1;
    public static final int DEFAULT_MIN_WORKERS = 1;
    public static final Duration DEFAULT_COOLDOWN = Duration.ofMinutes(5);
    public static final Duration DEFAULT_REBALANCE_INTERVAL = Duration.ofMinutes(5);
    public static final double DEFAULT_MIN_BALANCEDNESS = 0.8;
    public static final String DEFAULT_SECRET_KEY = "secret";

    // RFC 1123 label, as Kubernetes requires of volume claim and secret names.
    private static final Pattern DNS_NAME = Pattern.compile("[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?");
    private static final Pattern SECRET_KEY = Pattern.compile("[-._a-zA-Z0-9]{1,253}");
    // The sizes `epserve serve --kv-memory` reads: a number and an optional SI or binary unit.
    private static final Pattern SIZE = Pattern.compile("(?i)[0-9]+(\\.[0-9]+)?(b|kb|mb|gb|tb|k|m|g|t|kib|mib|gib|tib)?");
    // Longest resource name whose derived names ("<name>-worker-<ordinal>" as a pod's hostname) stay within 63.
    static final int MAX_NAME_LENGTH = 45;

    /** Where the checkpoint comes from; {@code path} is relative to the volume root ("" for the root). */
    public sealed interface Model {
        String path();

        record Claim(String claimName, String path) implements Model {
        }

        record HostPath(String hostPath, String path) implements Model {
        }
    }

    public record RebalancePolicy(boolean enabled, Duration interval, double minBalancedness) {
    }

    public record AuthSecret(String secretName, String key) {
    }

    /** The outcome of checking a resource: a config to act on, or the list of what is wrong. */
    public sealed interface Check {
        record Valid(EpServeConfig config) implements Check {
        }

        record Invalid(List<String> problems) implements Check {
            public String message() {
                return String.join("; ", problems);
            }
        }
    }

    public static Check check(EpServe resource) {
        List<String> problems = new ArrayList<>();
        String name = resource.getMetadata().getName();
        if (name.length() > MAX_NAME_LENGTH) {
            problems.add("metadata.name must be at most " + MAX_NAME_LENGTH + " characters (pod names derive from it), got "
                    + name.length());
        }
        EpServeSpec spec = resource.getSpec();
        if (spec == null) {
            problems.add("spec is missing");
            return new Check.Invalid(problems);
        }
        String image = spec.image() == null ? DEFAULT_IMAGE : spec.image().strip();
        if (image.isEmpty()) {
            problems.add("spec.image is empty");
        }
        Model model = model(spec.model(), problems);
        int frontends = atLeast("spec.frontends", spec.frontends(), DEFAULT_FRONTENDS, 1, problems);
        if (frontends > MAX_FRONTENDS) {
            problems.add("spec.frontends must be 1, got " + frontends + ": a worker serves one frontend at a time, so more "
                    + "frontends would need a worker pool each");
        }
        if (spec.kvMemory() != null && !SIZE.matcher(spec.kvMemory()).matches()) {
            problems.add("spec.kvMemory is not a size such as 512MiB or 8GiB: '" + spec.kvMemory() + "'");
        }
        WorkerRange range = spec.workers() == null ? new WorkerRange(null, null) : spec.workers();
        int minWorkers = atLeast("spec.workers.min", range.min(), DEFAULT_MIN_WORKERS, 1, problems);
        int maxWorkers = atLeast("spec.workers.max", range.max(), minWorkers, 1, problems);
        if (maxWorkers < minWorkers) {
            problems.add("spec.workers.min (" + minWorkers + ") is above spec.workers.max (" + maxWorkers + ")");
        }
        int redundant = atLeast("spec.redundantExperts", spec.redundantExperts(), 0, 0, problems);
        RebalancePolicy rebalancing = rebalancing(spec.rebalancing(), problems);
        ScalingPolicy scaling = scaling(spec.autoscaling(), minWorkers, Math.max(minWorkers, maxWorkers), problems);
        Optional<AuthSecret> auth = authSecret(spec.authSecret(), problems);
        if (auth.isEmpty()) {
            problems.add("spec.authSecret is missing: workers accept connections from other pods only with a credential "
                    + "(create one with: kubectl create secret generic NAME --from-literal=secret=...)");
        }
        RoleResources resources = spec.resources() == null ? new RoleResources(null, null) : spec.resources();
        if (!problems.isEmpty()) {
            return new Check.Invalid(List.copyOf(problems));
        }
        return new Check.Valid(new EpServeConfig(name, resource.getMetadata().getNamespace(), image, model,
                Optional.ofNullable(spec.expertDtype()), frontends, Optional.ofNullable(spec.kvMemory()), minWorkers, maxWorkers, redundant, rebalancing,
                orEmpty(resources.frontend()), orEmpty(resources.worker()), scaling, auth));
    }

    private static Model model(ModelSource source, List<String> problems) {
        if (source == null) {
            problems.add("spec.model is missing: set spec.model.persistentVolumeClaim or spec.model.hostPath");
            return null;
        }
        String path = source.path() == null ? "" : source.path().strip();
        if (path.startsWith("/") || List.of(path.split("/")).contains("..")) {
            problems.add("spec.model.path must be relative to the volume root and must not contain '..', got '" + path + "'");
        }
        boolean claim = source.persistentVolumeClaim() != null;
        boolean host = source.hostPath() != null;
        if (claim == host) {
            problems.add("spec.model needs exactly one of persistentVolumeClaim and hostPath");
            return null;
        }
        if (claim) {
            if (!DNS_NAME.matcher(source.persistentVolumeClaim()).matches()) {
                problems.add("spec.model.persistentVolumeClaim is not a valid claim name: '" + source.persistentVolumeClaim() + "'");
            }
            return new Model.Claim(source.persistentVolumeClaim(), path);
        }
        if (!source.hostPath().startsWith("/")) {
            problems.add("spec.model.hostPath must be absolute, got '" + source.hostPath() + "'");
        }
        return new Model.HostPath(source.hostPath(), path);
    }

    private static RebalancePolicy rebalancing(Rebalancing spec, List<String> problems) {
        Rebalancing r = spec == null ? new Rebalancing(null, null, null) : spec;
        int interval = atLeast("spec.rebalancing.intervalSeconds", r.intervalSeconds(),
                (int) DEFAULT_REBALANCE_INTERVAL.toSeconds(), 10, problems);
        double minBalancedness = r.minBalancedness() == null ? DEFAULT_MIN_BALANCEDNESS : r.minBalancedness();
        if (!(minBalancedness > 0 && minBalancedness <= 1)) {
            problems.add("spec.rebalancing.minBalancedness must be in (0, 1], got " + minBalancedness);
        }
        return new RebalancePolicy(r.enabled() == null || r.enabled(), Duration.ofSeconds(interval), minBalancedness);
    }

    private static ScalingPolicy scaling(Autoscaling spec, int min, int max, List<String> problems) {
        Autoscaling a = spec == null ? new Autoscaling(null, null) : spec;
        OptionalDouble target = OptionalDouble.empty();
        if (a.targetTokensPerWorkerSecond() != null) {
            double t = a.targetTokensPerWorkerSecond();
            if (!(t > 0) || Double.isInfinite(t)) {
                problems.add("spec.autoscaling.targetTokensPerWorkerSecond must be a positive number, got " + t);
            } else {
                target = OptionalDouble.of(t);
            }
        }
        int cooldown = atLeast("spec.autoscaling.cooldownSeconds", a.cooldownSeconds(), (int) DEFAULT_COOLDOWN.toSeconds(),
                0, problems);
        return new ScalingPolicy(min, max, target, Duration.ofSeconds(cooldown));
    }

    private static Optional<AuthSecret> authSecret(SecretKeyRef ref, List<String> problems) {
        if (ref == null) {
            return Optional.empty();
        }
        if (ref.name() == null || !DNS_NAME.matcher(ref.name()).matches()) {
            problems.add("spec.authSecret.name is not a valid secret name: '" + ref.name() + "'");
        }
        String key = ref.key() == null ? DEFAULT_SECRET_KEY : ref.key();
        if (!SECRET_KEY.matcher(key).matches()) {
            problems.add("spec.authSecret.key is not a valid secret key: '" + key + "'");
        }
        return Optional.of(new AuthSecret(ref.name(), key));
    }

    private static int atLeast(String field, Integer value, int fallback, int min, List<String> problems) {
        int v = value == null ? fallback : value;
        if (v < min) {
            problems.add(field + " must be at least " + min + ", got " + v);
        }
        return v;
    }

    private static ResourceRequirements orEmpty(ResourceRequirements r) {
        return r == null ? new ResourceRequirements() : r;
    }
}
