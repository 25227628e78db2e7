#!/usr/bin/env python3
"""Tiny end-to-end fixtures for the architectures added after ../shared/fixtures: DeepSeek-V2
(and V2-Lite) and gpt-oss, in the layout and expected.json format of ../shared/fixtures (see its
README), with the reference computed in float64 by the Hugging Face transformers modeling code.

Dev-time only: the outputs are committed under epserve-model/src/test/resources/fixtures/ and
the Java tests (io.epserve.model.ArchGoldenTest) read them; CI never runs Python.

How to run (offline; from the repository root), with the same venv as make_layer_goldens.py:

    /tmp/goldens-venv/bin/python tools/goldens/make_arch_fixtures.py [--out epserve-model/src/test/resources/fixtures]

What it does per fixture: builds the model from a config with seeded random weights, scaled so
that activations are O(1) and routing decisions are clear (every weight N(0, 1/fan_in), norms
1 + N(0, 0.1^2), router gates larger), stores them (F32; gpt-oss's experts in MXFP4 as OpenAI
ships them: *_blocks / *_scales, with values drawn on the MXFP4 grid so the dequantized float64
weights the reference uses are exact), then runs the model in float64 with eager attention and
eager experts on prompts drawn from a seeded generator, recording the logits of every position,
every sparse layer's routing (experts, the multipliers applied to them, and the decision
margin), and 16 greedy tokens (full recompute, ties to the lowest id).
"""

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, GptOssConfig, GptOssForCausalLM

torch.set_grad_enabled(False)

TOKENIZER_FROM = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "deepseek_v3" / "model"
GENERATED = 16
PROMPTS = [[0, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100], [0, 77, 111, 69, 33]]


def num(v, digits=9):
    return float(f"{float(v):.{digits}g}")


def arr(t):
    a = t.detach().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
    return [arr(x) for x in a] if a.ndim > 1 else [num(x) for x in a]


def init_weights(model, seed, gate_scale=4.0):
    """Seeded weights scaled for O(1) activations: N(0, 1/fan_in), norms near 1, embeddings N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("norm.weight") or "layernorm" in name:
            p.copy_(1 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64))
        elif "embed_tokens" in name:
            p.copy_(torch.randn(shape, generator=g, dtype=torch.float64))
        elif name.endswith("sinks"):
            p.copy_(torch.randn(shape, generator=g, dtype=torch.float64))
        elif name.endswith("bias"):
            p.copy_(0.1 * torch.randn(shape, generator=g, dtype=torch.float64))
        else:
            fan_in = shape[-1]
            scale = (gate_scale if (name.endswith("gate.weight") or name.endswith("router.weight")) else 1.0) / math.sqrt(fan_in)
            p.copy_(scale * torch.randn(shape, generator=g, dtype=torch.float64))


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"  {path} ({path.stat().st_size} bytes)")


def copy_tokenizer(dst):
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER_FROM / f, dst / f)
    write_json(dst / "generation_config.json", {"bos_token_id": 0, "eos_token_id": 1, "do_sample": False})


# ---------------------------------------------------------------- routing records


def deepseek_v2_routing(gate, x):
    """(experts, weights, margin) of DeepseekV2TopkRouter on rows x (float32 logits, as HF computes them)."""
    logits, weights, idx = gate(x)
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    n, e = probs.shape
    k = gate.top_k
    if gate.topk_method == "group_limited_greedy":
        per = e // gate.num_group
        gs = probs.reshape(n, gate.num_group, per).max(-1)
        gsorted = -np.sort(-gs, axis=-1)
        gmargin = gsorted[:, gate.topk_group - 1] - gsorted[:, gate.topk_group]
        keep = np.zeros_like(gs, dtype=bool)
        np.put_along_axis(keep, np.argsort(-gs, axis=-1, kind="stable")[:, : gate.topk_group], True, axis=-1)
        masked = np.where(np.repeat(keep, per, axis=-1), probs, -np.inf)
    else:
        gmargin = np.full(n, np.inf)
        masked = probs
    msorted = -np.sort(-masked, axis=-1)
    margin = np.minimum(gmargin, msorted[:, k - 1] - msorted[:, k])
    return idx, weights, margin


def gpt_oss_routing(router, x):
    logits, scores, idx = router(x)
    s = -np.sort(-logits.double().numpy(), axis=-1)
    k = router.top_k
    return idx, scores, s[:, k - 1] - s[:, k]


def reference(model, sparse_gates, routing_of, tokens):
    """Logits of every position, routing of every sparse layer, greedy continuation."""
    captured = {}
    hooks = []
    for layer, gate in sparse_gates:
        def pre(mod, args, layer=layer):
            captured[layer] = args[0].reshape(-1, args[0].shape[-1]).clone()
        hooks.append(gate.register_forward_pre_hook(pre))
    out = model(torch.tensor([tokens])).logits[0]
    for h in hooks:
        h.remove()
    routing = []
    for layer, gate in sparse_gates:
        idx, w, margin = routing_of(gate, captured[layer])
        routing.append({"layer": layer, "experts": idx.numpy().astype(int).tolist(), "weights": arr(w),
                        "margin": arr(torch.tensor(margin))})
    seq = list(tokens)
    gaps = []
    for _ in range(GENERATED):
        lg = model(torch.tensor([seq])).logits[0, -1].double().numpy()
        order = np.argsort(-lg, kind="stable")
        gaps.append(lg[order[0]] - lg[order[1]])
        seq.append(int(order[0]))
    return {"tokens": tokens, "logits": arr(out), "routing": routing, "generated": seq[len(tokens):],
            "generated_min_top2_gap": num(min(gaps))}


def save_f32(model, dst, extra=None, drop=()):
    """The model's parameters as F32 safetensors (HF names), plus extra tensors, minus dropped names."""
    tensors = {n: p.detach().to(torch.float32).contiguous() for n, p in model.state_dict().items()
               if "rotary" not in n and n not in drop}
    tensors.update({n: t.contiguous() for n, t in (extra or {}).items()})
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})


def write_fixture(out, name, cfg_dict, model, sparse_gates, routing_of, extra=None, drop=()):
    dst = out / name / "model"
    dst.mkdir(parents=True, exist_ok=True)
    cfg_dict = dict(cfg_dict)
    cfg_dict["transformers_version"] = transformers.__version__
    write_json(dst / "config.json", cfg_dict)
    copy_tokenizer(dst)
    save_f32(model, dst, extra, drop)
    model64 = model.to(torch.float64)
    cases = [reference(model64, sparse_gates, routing_of, p) for p in PROMPTS]
    write_json(out / name / "expected.json", {"model": "model", "generator": "tools/goldens/make_arch_fixtures.py",
                                              "transformers": transformers.__version__, "torch": torch.__version__,
                                              "cases": cases})
    worst = min(min(r["margin"][t] for r in c["routing"] for t in range(len(c["tokens"]))) for c in cases)
    print(f"  {name}: smallest routing margin {worst:.3g}, smallest greedy top-2 gap "
          f"{min(c['generated_min_top2_gap'] for c in cases):.3g}")


# ---------------------------------------------------------------- DeepSeek-V2


def deepseek_v2(out, name, lite):
    cfg = {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
        "vocab_size": 256, "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
        "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4,
        "n_routed_experts": 8, "n_shared_experts": 2, "num_experts_per_tok": 2,
        "routed_scaling_factor": 1.0 if lite else 2.0, "norm_topk_prob": False,
        "topk_method": "greedy" if lite else "group_limited_greedy",
        "n_group": 1 if lite else 4, "topk_group": 1 if lite else 2,
        "first_k_dense_replace": 1, "moe_layer_freq": 1, "scoring_func": "softmax",
        "q_lora_rank": None if lite else 24, "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
        "v_head_dim": 12, "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "attention_bias": False, "tie_word_embeddings": False,
        "bos_token_id": 0, "eos_token_id": 1,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048, "beta_fast": 32,
                         "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    }
    hf = DeepseekV2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
    hf._attn_implementation = "eager"
    hf._experts_implementation = "eager"
    model = DeepseekV2ForCausalLM(hf).to(torch.float64).eval()
    init_weights(model, seed=2 if lite else 1)
    gates = [(l, layer.mlp.gate) for l, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]
    write_fixture(out, name, cfg, model, gates, deepseek_v2_routing)


# ---------------------------------------------------------------- gpt-oss


def gpt_oss(out, name):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    layers, experts, hidden, inter = 3, 8, 64, 32
    cfg = {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
        "vocab_size": 256, "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": experts,
        "num_experts_per_tok": 2, "sliding_window": 4,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)],
        "attention_bias": True, "swiglu_limit": 7.0, "hidden_act": "silu", "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": 150000.0, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
        "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                         "original_max_position_embeddings": 4096},
        "quantization_config": {"quant_method": "mxfp4",
                                "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                           "model.embed_tokens", "lm_head"]},
    }
    hf = GptOssConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type", "quantization_config")})
    hf._attn_implementation = "eager"
    hf._experts_implementation = "eager"
    model = GptOssForCausalLM(hf).to(torch.float64).eval()
    init_weights(model, seed=3)
    g = torch.Generator().manual_seed(4)
    extra, drop = {}, []
    for l, layer in enumerate(model.model.layers):
        p = f"model.layers.{l}.mlp.experts."
        packed = {}
        for proj, rows, cols in (("gate_up_proj", 2 * inter, hidden), ("down_proj", hidden, inter)):
            blocks = torch.randint(0, 256, (experts, rows, cols // 32, 16), generator=g, dtype=torch.int32).to(torch.uint8)
            scales = (127 + torch.randint(-6, -3, (experts, rows, cols // 32), generator=g, dtype=torch.int32)).to(torch.uint8)
            extra[p + proj + "_blocks"] = blocks
            extra[p + proj + "_scales"] = scales
            # transformers' own MXFP4 decoding gives the float64 weights the reference computes with
            packed[proj] = convert_moe_packed_tensors(blocks, scales, dtype=torch.float64)
            drop.append(p + proj)
        layer.mlp.experts.gate_up_proj.copy_(packed["gate_up_proj"])
        layer.mlp.experts.down_proj.copy_(packed["down_proj"])
    gates = [(l, layer.mlp.router) for l, layer in enumerate(model.model.layers)]
    write_fixture(out, name, cfg, model, gates, gpt_oss_routing, extra=extra, drop=drop)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="epserve-model/src/test/resources/fixtures")
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    out = Path(a.out)
    for name, make in [("deepseek_v2", lambda: deepseek_v2(out, "deepseek_v2", False)),
                       ("deepseek_v2_lite", lambda: deepseek_v2(out, "deepseek_v2_lite", True)),
                       ("gpt_oss", lambda: gpt_oss(out, "gpt_oss"))]:
        if a.only in (None, name):
            print(name)
            make()


if __name__ == "__main__":
    main()
