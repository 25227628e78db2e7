package io.epserve.model;

import io.epserve.moe.RoutingResult;

/** Sees each sparse layer's routing decisions (for `epserve logits`, statistics, load views). */
@FunctionalInterface
public interface RoutingListener {
    RoutingListener NONE = (layer, routing) -> { };

    void onRouting(int layer, RoutingResult routing);
}
