package io.epserve.rpc;

import io.epserve.model.LoadedModel;
import io.epserve.model.ModelConfig;
import io.epserve.model.ModelExperts;
import io.epserve.model.ModelWeights;
import io.epserve.moe.ExpertDispatcher;
import io.epserve.moe.ExpertPlacement;
import java.nio.file.Path;
import java.util.List;

/**
 * For {@link LoadedModel.Options#withDispatchers} in tests: the model's routed experts on remote
 * workers ({@link GrpcExpertDispatcher#connect}), failing over to the frontend's own experts, as
 * a frontend with {@code --workers} runs them; the frontend then neither resolves nor validates
 * the experts' tensors.
 */
final class RemoteExperts {
    private RemoteExperts() {}

    /** Over TCP to host:port addresses. */
    static LoadedModel.Dispatchers on(List<String> workers, ExpertPlacement.Policy policy, GrpcExpertDispatcher.Config config) {
        return on(workers, policy, config, GrpcExpertDispatcher.TCP);
    }

    static LoadedModel.Dispatchers on(List<String> workers, ExpertPlacement.Policy policy, GrpcExpertDispatcher.Config config,
                                      GrpcExpertDispatcher.ChannelFactory channels) {
        List<String> addresses = List.copyOf(workers);
        return new LoadedModel.Dispatchers() {
            @Override
            public ExpertDispatcher create(Path modelDir, ModelConfig cfg, ModelWeights weights) {
                return GrpcExpertDispatcher.connect(modelDir, cfg.moeShape(), addresses, policy, config, channels)
                        .withFailover(() -> ModelExperts.frontendDispatcher(modelDir, cfg, weights, config.expertDType()),
                                GrpcExpertDispatcher.FAILOVER_PROBE_INTERVAL);
            }

            @Override
            public boolean local() {
                return false;
            }
        };
    }
}
