package io.epserve.server;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.epserve.moe.ExpertCost;
import io.epserve.moe.ExpertLoad;
import io.epserve.moe.ExpertPlacement;
import io.epserve.moe.Rebalancer;
import io.netty.handler.codec.http.HttpResponseStatus;

/**
 * The placement endpoints: {@code GET /v1/epserve/placement} (the live placement with its epoch
 * and each layer's balancedness under the load window; with a fixed cost per expert run, also
 * {@code expert_fixed_cost} and a {@code cost_balancedness} per sparse layer), {@code GET /v1/epserve/load} (routed
 * tokens per layer and expert over the window, the load-file shape) and
 * {@code POST /v1/epserve/placement/rebalance} (a re-placement now; answers once the new epoch
 * serves or the change was abandoned). They run off the event loop: a rebalance blocks while
 * workers load.
 */
final class PlacementEndpoints {
    private PlacementEndpoints() {}

    static void placement(HttpHandler.Call c) {
        withRebalancer(c, r -> {
            ExpertPlacement p = r.control().placement();
            ExpertLoad window = r.control().routedTokens().window();
            ObjectNode body = ExpertLoadJson.placementJson(c.server().json, p, window);
            body.put("rebalances", r.rebalances());
            ExpertCost cost = r.settings().cost();
            if (!cost.pairsOnly()) {
                // what the policy balances beside the token figure: the workers' cost under --expert-fixed-cost
                body.put("expert_fixed_cost", cost.fixedPairs());
                ArrayNode cb = body.putArray("cost_balancedness");
                for (double v : p.costBalancedness(window, cost)) {
                    cb.add(v);
                }
            }
            return body;
        });
    }

    static void load(HttpHandler.Call c) {
        withRebalancer(c, r -> {
            ExpertLoad window = r.control().routedTokens().window();
            ObjectNode body = ExpertLoadJson.toJson(c.server().json, window);
            body.put("window_steps", r.control().routedTokens().windowSteps());
            return body;
        });
    }

    static void rebalance(HttpHandler.Call c) {
        withRebalancer(c, r -> {
            Rebalancer.Outcome o = r.rebalanceNow("POST " + c.path());
            ObjectNode body = c.server().json.createObjectNode();
            body.put("changed", o.changed());
            body.put("epoch", o.epoch());
            body.put("seconds", o.seconds());
            body.put("reason", o.reason());
            ArrayNode before = body.putArray("balancedness_before");
            for (double v : o.before()) {
                before.add(v);
            }
            ArrayNode after = body.putArray("balancedness_after");
            for (double v : o.after()) {
                after.add(v);
            }
            return body;
        });
    }

    private interface Answer {
        ObjectNode of(Rebalancer r);
    }

    private static void withRebalancer(HttpHandler.Call c, Answer answer) {
        Rebalancer r = c.server().placement();
        if (r == null) {
            c.error(ApiError.notReady("no expert placement is served yet"));
            return;
        }
        c.server().executor.execute(() -> c.json(HttpResponseStatus.OK, answer.of(r)));
    }
}
