package io.epserve.model;

/** Greedy decoding with the KV cache, ties to the lowest id (the fixtures' rule). */
final class Greedy {
    private Greedy() {}

    static int[] generate(MoeTransformer t, int[] prompt, int count) {
        KvCache cache = t.newCache(prompt.length + count);
        float[] logits = t.forward(cache, prompt, prompt.length, false, RoutingListener.NONE);
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
            int best = 0;
            for (int v = 1; v < logits.length; v++) {
                if (logits[v] > logits[best]) {
                    best = v;
                }
            }
            out[i] = best;
            logits = t.forward(cache, new int[] {best}, 1, false, RoutingListener.NONE);
        }
        return out;
    }
}
