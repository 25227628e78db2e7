package io.epserve.model;

import java.util.Arrays;
import java.util.stream.Collectors;

/** The checkpoint architectures epserve computes, by the name config.json gives them, each with its {@link ArchitectureMapper}. */
public enum Architecture {
    MIXTRAL("MixtralForCausalLM", new MixtralMapper()),
    QWEN2_MOE("Qwen2MoeForCausalLM", new QwenMoeMapper(false)),
    QWEN3_MOE("Qwen3MoeForCausalLM", new QwenMoeMapper(true)),
    OLMOE("OlmoeForCausalLM", new OlmoeMapper()),
    DEEPSEEK_V2("DeepseekV2ForCausalLM", new DeepSeekMapper(false)),
    DEEPSEEK_V3("DeepseekV3ForCausalLM", new DeepSeekMapper(true)),
    GPT_OSS("GptOssForCausalLM", new GptOssMapper());

    private final String hfName;
    private final ArchitectureMapper mapper;

    Architecture(String hfName, ArchitectureMapper mapper) {
        this.hfName = hfName;
        this.mapper = mapper;
    }

    public String hfName() {
        return hfName;
    }

    ArchitectureMapper mapper() {
        return mapper;
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
