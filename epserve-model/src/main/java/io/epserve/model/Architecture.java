package io.epserve.model;

import java.util.Arrays;
import java.util.stream.Collectors;

/** The checkpoint architectures epserve computes, by the name config.json gives them. */
public enum Architecture {
    MIXTRAL("MixtralForCausalLM"),
    QWEN2_MOE("Qwen2MoeForCausalLM"),
    QWEN3_MOE("Qwen3MoeForCausalLM"),
    OLMOE("OlmoeForCausalLM"),
    DEEPSEEK_V3("DeepseekV3ForCausalLM");

    private final String hfName;

    Architecture(String hfName) {
        this.hfName = hfName;
    }

    public String hfName() {
        return hfName;
    }

    public static Architecture fromHfName(String name) {
        for (Architecture a : values()) {
            if (a.hfName.equals(name)) {
                return a;
            }
        }
        return null;
    }

    public static String supportedList() {
        return Arrays.stream(values()).map(Architecture::hfName).collect(Collectors.joining(", "));
    }
}
