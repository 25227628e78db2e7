package io.epserve.model;

import io.epserve.moe.RoutingResult;

/**
 * Sees each sparse layer's routing decisions (for `epserve logits`, statistics, load views).
 * The {@link RoutingResult} lives in the step's reusable buffers: read or copy it during the
 * call (or before the transformer's next step), do not keep it.
 */
@FunctionalInterface
public interface RoutingListener {
    RoutingListener NONE = (layer, routing) -> { };

    void onRouting(int layer, RoutingResult routing);
}
