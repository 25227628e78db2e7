package io.epserve.operator.dependent;

import io.epserve.operator.Commands;
import io.epserve.operator.EpServeConfig;
import io.epserve.operator.Names;
import io.epserve.operator.Plan;
import io.epserve.operator.api.EpServe;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.javaoperatorsdk.operator.api.config.informer.Informer;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependent;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;

/**
 * The frontends' configuration, as environment variables ({@code envFrom}): the worker list their
 * {@code --workers} argument expands, and the placement settings. Frontends carry a hash of it, so a change (a
 * scaled worker pool) rolls them onto the new list.
 */
@KubernetesDependent(informer = @Informer(labelSelector = Names.MANAGED_SELECTOR))
public final class ConfigMapDependent extends OwnedDependent<ConfigMap> {

    public ConfigMapDependent() {
        super(ConfigMap.class);
    }

    @Override
    protected ConfigMap desired(EpServe primary, Context<EpServe> context) {
        Plan plan = Plan.of(context);
        EpServeConfig c = plan.config();
        return new ConfigMapBuilder().withMetadata(Metadata.of(c, Names.configMap(c), Names.labels(c)))
                .withData(data(plan)).build();
    }

    /** Keys sorted, so the hash below depends on content only. */
    public static SortedMap<String, String> data(Plan plan) {
        EpServeConfig c = plan.config();
        SortedMap<String, String> data = new TreeMap<>();
        data.put(Commands.WORKERS_ENV, String.join(",", Names.workerAddresses(c, plan.workers())));
        data.put("EPSERVE_REDUNDANT_EXPERTS", "" + c.redundantExperts());
        data.put("EPSERVE_REBALANCE_ENABLED", "" + c.rebalancing().enabled());
        data.put("EPSERVE_REBALANCE_INTERVAL_SECONDS", "" + c.rebalancing().interval().toSeconds());
        data.put("EPSERVE_REBALANCE_MIN_BALANCEDNESS", "" + c.rebalancing().minBalancedness());
        return data;
    }

    public static String hash(Plan plan) {
        try {
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            for (Map.Entry<String, String> e : data(plan).entrySet()) {
                sha.update((e.getKey() + "=" + e.getValue() + "\n").getBytes(StandardCharsets.UTF_8));
            }
            return HexFormat.of().formatHex(sha.digest(), 0, 16);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is required of every JDK", e);
        }
    }
}
