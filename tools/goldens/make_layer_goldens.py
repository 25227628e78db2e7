#!/usr/bin/env python3
"""Layer-level golden tensors for epserve (DESIGN.md §3.14), produced by the real Hugging Face
transformers modeling code in float64.

Dev-time only: its outputs are committed under epserve-model/src/test/resources/goldens/ and the
Java tests (io.epserve.model.LayerGolden*) read them; CI never runs Python.

How to run (offline; from the repository root):

    python3 -m venv /tmp/goldens-venv
    /tmp/goldens-venv/bin/pip install --no-index --find-links /opt/wheels --find-links /opt/pypi/files \
        torch transformers safetensors numpy
    /tmp/goldens-venv/bin/python tools/goldens/make_layer_goldens.py \
        [--fixtures ../shared/fixtures] [--out epserve-model/src/test/resources/goldens]

The committed files were made with transformers 5.17.0 and torch 2.13.0+cpu (the only
transformers in the offline index; it has all five architectures). The script is deterministic
(seeded inputs, deterministic CPU kernels), so rerunning it reproduces the files.

What it does, per fixture checkpoint of ../shared/fixtures (loaded with from_pretrained,
dtype=float64, eager attention, eager experts):

  rmsnorm.json    input_layernorm of layer 0 and the final model.norm on seeded rows
  attention.json  layer 1's self_attn over a prefill of T tokens at positions 0..T-1, with HF's
                  rotary_emb for the position embeddings and an explicit causal mask, no cache
  moe.json        layer 1's sparse block on seeded rows: the router (mlp.gate: logits, chosen
                  experts, weights, margin), two single experts (the experts module with every
                  token sent to that one expert at weight 1), the shared expert (and Qwen2's
                  sigmoid shared-expert gate), and the whole block output (mlp(x))
  dense_mlp.json  (DeepSeek-V3) the dense SwiGLU MLP of layer 0
  router_group_mask.json  (DeepSeek-V3) the router with a correction bias chosen so that fewer
                  than k experts of the kept groups score above 0: the experts of the dropped
                  groups must be excluded (masked to -inf), not compete with a score of 0

plus a synthetic DeepSeek-V3 checkpoint written here (deepseek_v3_nolora_yarn/model: MLA without
q_lora_rank, YaRN rope_scaling like the real DeepSeek-V3) with the same goldens, and standalone
RoPE cases (rope/rope.json): HF's rotary embedding classes for a default (NeoX) config, the
DeepSeek interleaved rotation, and YaRN configs (the real DeepSeek-V3 one and an mscale variant):
inv_freq, the cos/sin multiplier, cos/sin at a few positions, rotated vectors and DeepSeek's
softmax scale.

Inputs are drawn from a seeded generator and rounded to float32 before the float64 reference
runs, so the Java side (float32) sees exactly the same inputs. Note that transformers computes
some pieces in float32 even when the model is float64 (RMSNorm's rsqrt, the rotary angles,
attention softmax, router softmax, DeepSeek's router); the references therefore carry ~1e-7
relative error, far below the tolerances the Java tests state.

Router inputs are chosen so that every token's routing margin (the gap that decided the choice,
as in ../shared/fixtures/README.md) exceeds 2e-3, so float32 must pick the same experts.
"""

import argparse
import copy
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, DeepseekV3Config, MixtralConfig
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds
from transformers.models.mixtral import modeling_mixtral as mx

torch.set_grad_enabled(False)

T = 5  # tokens per case
MARGIN = 2e-3
META = {
    "generator": "tools/goldens/make_layer_goldens.py",
    "transformers": transformers.__version__,
    "torch": torch.__version__,
    "dtype": "float64 (inputs rounded to float32)",
}
FIXTURES = ["mixtral", "mixtral_f32", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3"]


# ---------------------------------------------------------------- helpers

def num(v, digits=9):
    """A float in 9 significant digits: exact for float32 inputs, ~1e-9 relative for outputs."""
    v = float(v)
    return float(f"{v:.{digits}g}")


def arr(t):
    a = t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
    if a.ndim == 0:
        return num(a)
    return [arr(x) for x in a] if a.ndim > 1 else [num(x) for x in a]


def ints(t):
    return np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t).astype(int).tolist()


def f32_rows(rng, n, h, scale=1.0, offset=0.0):
    """Seeded rows rounded to float32 (as float64 tensors), so Java sees the same numbers."""
    x = (rng.standard_normal((n, h)) * scale + offset).astype(np.float32)
    return torch.from_numpy(x.astype(np.float64))


def write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"  {path} ({path.stat().st_size} bytes)")


def load(model_dir):
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float64, attn_implementation="eager", experts_implementation="eager",
        output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if "rotary" not in k]
    if missing or info.get("unexpected_keys") or info.get("mismatched_keys"):
        raise SystemExit(f"{model_dir}: incomplete load: {info}")
    model.eval()
    return model


def causal_mask(t, dtype=torch.float64):
    m = torch.full((t, t), torch.finfo(dtype).min, dtype=dtype).triu(1)
    return m[None, None]


def is_deepseek(model):
    return model.config.model_type == "deepseek_v3"


def softmax_margins(logits, k):
    s = np.sort(logits.double().numpy(), axis=-1)[:, ::-1]
    return s[:, k - 1] - s[:, k]


def grouped_margins(logits, bias, k, n_group, topk_group):
    """DeepSeek's choice margins in sigmoid+bias space: min(group gap, expert gap)."""
    scores = 1.0 / (1.0 + np.exp(-logits.double().numpy()))
    choice = scores + bias.double().numpy()[None, :]
    n, e = choice.shape
    groups = choice.reshape(n, n_group, e // n_group)
    gs = np.sort(groups, axis=-1)[:, :, ::-1][:, :, :2].sum(-1)
    gsorted = np.sort(gs, axis=-1)[:, ::-1]
    gmargin = gsorted[:, topk_group - 1] - gsorted[:, topk_group]
    keep = np.zeros_like(gs, dtype=bool)
    np.put_along_axis(keep, np.argsort(-gs, axis=-1, kind="stable")[:, :topk_group], True, axis=-1)
    masked = np.where(np.repeat(keep, e // n_group, axis=-1), choice, -np.inf)
    msorted = np.sort(masked, axis=-1)[:, ::-1]
    emargin = msorted[:, k - 1] - msorted[:, k]
    return np.minimum(gmargin, emargin)


def route(gate, x):
    """Calls the router module: every architecture's gate returns (logits, weights, indices) in v5."""
    logits, weights, idx = gate(x)
    return logits, weights, idx


def margins_of(model, gate, x):
    cfg = model.config
    logits, _, _ = route(gate, x)
    k = cfg.num_experts_per_tok
    if is_deepseek(model):
        return grouped_margins(logits, gate.e_score_correction_bias, k, cfg.n_group, cfg.topk_group)
    return softmax_margins(logits, k)


def pick_rows(rng, model, gate, h, t=T):
    """Seeded candidate rows, kept in draw order where the routing margin exceeds MARGIN."""
    cand = f32_rows(rng, 256, h)
    m = margins_of(model, gate, cand)
    keep = [i for i in range(len(cand)) if m[i] > MARGIN][:t]
    if len(keep) < t:
        raise SystemExit("not enough inputs with a clear routing margin")
    return cand[keep]


def router_record(model, gate, x):
    logits, weights, idx = route(gate, x)
    return {
        "logits": arr(logits),
        "experts": ints(idx),
        "weights": arr(weights),
        "margin": arr(margins_of(model, gate, x)),
    }


def single_expert(experts, x, e):
    """The real experts module with every token routed to expert e at weight 1."""
    n = x.shape[0]
    idx = torch.full((n, 1), e, dtype=torch.long)
    w = torch.ones((n, 1), dtype=x.dtype)
    return experts(x, idx, w)


# ---------------------------------------------------------------- per model goldens

def model_goldens(name, model, out_dir, seed):
    cfg = model.config
    h = cfg.hidden_size
    layers = model.model.layers
    rng = np.random.default_rng(seed)
    meta = dict(META, fixture=name)

    # RMSNorm: residual-stream-like rows (not unit RMS, with an offset) so the norm has work to do
    cases = []
    for what, module in (("model.layers.0.input_layernorm", layers[0].input_layernorm), ("model.norm", model.model.norm)):
        x = f32_rows(rng, 3, h, scale=2.5, offset=0.3)
        cases.append({"module": what, "eps": module.variance_epsilon, "input": arr(x), "output": arr(module(x[None])[0])})
    write(out_dir / "rmsnorm.json", {"meta": meta, "cases": cases})

    # Attention of layer 1 over a prefill at positions 0..T-1
    L = 1
    x = f32_rows(rng, T, h)[None]
    pos = torch.arange(T)[None]
    cos_sin = model.model.rotary_emb(x, pos)
    attn = layers[L].self_attn
    out, _ = attn(hidden_states=x, position_embeddings=cos_sin, attention_mask=causal_mask(T))
    write(out_dir / "attention.json", {
        "meta": dict(meta, module=f"model.layers.{L}.self_attn", attention_scale=attn.scaling),
        "layer": L, "positions": ints(pos[0]), "input": arr(x[0]), "output": arr(out[0])})

    # The sparse block of layer 1: router, two experts, shared expert, whole block
    mlp = layers[L].mlp
    x = pick_rows(rng, model, mlp.gate, h)
    n_exp = mlp.experts.num_experts
    rec = {"meta": dict(meta, module=f"model.layers.{L}.mlp ({type(mlp).__name__})"), "layer": L, "input": arr(x),
           "router": router_record(model, mlp.gate, x),
           "experts": [{"id": e, "output": arr(single_expert(mlp.experts, x, e))} for e in (1, n_exp - 1)]}
    if hasattr(mlp, "shared_expert"):  # Qwen2-MoE: sigmoid(shared_expert_gate(x)) * shared_expert(x)
        rec["shared"] = {"output": arr(mlp.shared_expert(x)),
                         "gate": arr(torch.sigmoid(mlp.shared_expert_gate(x))[:, 0])}
    elif hasattr(mlp, "shared_experts"):  # DeepSeek-V3: plain sum
        rec["shared"] = {"output": arr(mlp.shared_experts(x))}
    rec["output"] = arr(mlp(x[None])[0])
    write(out_dir / "moe.json", rec)

    if is_deepseek(model):
        dense = layers[0].mlp
        x = f32_rows(rng, T, h)
        write(out_dir / "dense_mlp.json", {"meta": dict(meta, module="model.layers.0.mlp (DeepseekV3MLP)"),
                                            "layer": 0, "input": arr(x), "output": arr(dense(x))})
        group_mask_golden(model, out_dir, rng, meta)


def group_mask_golden(model, out_dir, rng, meta):
    """Router of layer 1 with a correction bias that puts most biased scores below 0.

    Groups holding experts 0 and (E/n_group) get a +0.5 expert, everything else -2, so exactly
    two groups win and only two of their experts have a positive biased score; with k > 2 the
    remaining choices must come from the kept groups' negative scores, never from dropped groups.
    """
    cfg = model.config
    gate = copy.deepcopy(model.model.layers[1].mlp.gate)
    e, per = cfg.n_routed_experts, cfg.n_routed_experts // cfg.n_group
    bias = torch.full((e,), -2.0, dtype=gate.e_score_correction_bias.dtype)
    bias[0] = 0.5
    bias[per] = 0.5
    gate.e_score_correction_bias.copy_(bias)
    x = pick_rows(rng, model, gate, cfg.hidden_size)
    write(out_dir / "router_group_mask.json", {
        "meta": dict(meta, module="model.layers.1.mlp.gate (DeepseekV3TopkRouter) with e_score_correction_bias replaced"),
        "layer": 1, "correction_bias": arr(bias), "input": arr(x), "router": router_record(model, gate, x)})


# ---------------------------------------------------------------- synthetic DeepSeek-V3 (no q_lora, YaRN)

DEEPSEEK_V3_YARN = {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                    "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}


def synthetic_deepseek(model_dir, seed):
    """A tiny DeepSeek-V3 in HF layout (v4-style config.json and per-expert tensor names, BF16):
    MLA with a plain q_proj (q_lora_rank null) and the real DeepSeek-V3 YaRN rope_scaling."""
    config = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "vocab_size": 32, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "hidden_act": "silu",
        "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
        "rope_scaling": DEEPSEEK_V3_YARN, "rope_interleave": True, "attention_bias": False,
        "bos_token_id": 0, "eos_token_id": 1, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "intermediate_size": 64, "moe_intermediate_size": 16, "n_routed_experts": 8, "n_shared_experts": 1,
        "num_experts_per_tok": 2, "n_group": 4, "topk_group": 2, "routed_scaling_factor": 2.5,
        "norm_topk_prob": True, "first_k_dense_replace": 1, "q_lora_rank": None, "kv_lora_rank": 16,
        "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16,
        "topk_method": "noaux_tc", "scoring_func": "sigmoid", "attention_dropout": 0.0,
        "initializer_range": 0.02, "use_cache": True,
    }
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    h, heads = config["hidden_size"], config["num_attention_heads"]
    nope, rope, vd, kvr = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"], config["kv_lora_rank"]

    def lin(o, i):  # ~unit-variance outputs for unit-variance inputs
        return torch.randn((o, i), generator=g) / math.sqrt(i)

    def norm(n):
        return 1.0 + 0.1 * torch.randn((n,), generator=g)

    t = {"model.embed_tokens.weight": torch.randn((config["vocab_size"], h), generator=g),
         "model.norm.weight": norm(h), "lm_head.weight": lin(config["vocab_size"], h)}
    for L in range(config["num_hidden_layers"]):
        p = f"model.layers.{L}."
        t[p + "input_layernorm.weight"] = norm(h)
        t[p + "post_attention_layernorm.weight"] = norm(h)
        t[p + "self_attn.q_proj.weight"] = lin(heads * (nope + rope), h)
        t[p + "self_attn.kv_a_proj_with_mqa.weight"] = lin(kvr + rope, h)
        t[p + "self_attn.kv_a_layernorm.weight"] = norm(kvr)
        t[p + "self_attn.kv_b_proj.weight"] = lin(heads * (nope + vd), kvr)
        t[p + "self_attn.o_proj.weight"] = lin(h, heads * vd)
        if L < config["first_k_dense_replace"]:
            inter = config["intermediate_size"]
            for nm, shape in (("gate_proj", (inter, h)), ("up_proj", (inter, h)), ("down_proj", (h, inter))):
                t[p + f"mlp.{nm}.weight"] = lin(*shape)
        else:
            inter = config["moe_intermediate_size"]
            t[p + "mlp.gate.weight"] = lin(config["n_routed_experts"], h) * 2.0
            t[p + "mlp.gate.e_score_correction_bias"] = torch.from_numpy(rng.uniform(-0.05, 0.05, config["n_routed_experts"]))
            for e in range(config["n_routed_experts"]):
                for nm, shape in (("gate_proj", (inter, h)), ("up_proj", (inter, h)), ("down_proj", (h, inter))):
                    t[p + f"mlp.experts.{e}.{nm}.weight"] = lin(*shape)
            shared = inter * config["n_shared_experts"]
            for nm, shape in (("gate_proj", (shared, h)), ("up_proj", (shared, h)), ("down_proj", (h, shared))):
                t[p + f"mlp.shared_experts.{nm}.weight"] = lin(*shape)
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "config.json", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sorted(t.items())}, str(model_dir / "model.safetensors"),
              metadata={"format": "pt"})
    print(f"  {model_dir}/model.safetensors ({(model_dir / 'model.safetensors').stat().st_size} bytes)")


# ---------------------------------------------------------------- standalone RoPE

DEEPSEEK_V3_CONFIG = {  # the fields of deepseek-ai/DeepSeek-V3's config.json that shape attention and RoPE
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 129280, "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
    "num_key_value_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
    "routed_scaling_factor": 2.5, "norm_topk_prob": True, "first_k_dense_replace": 3, "scoring_func": "sigmoid",
    "topk_method": "noaux_tc", "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 163840, "rope_theta": 10000,
    "rope_scaling": DEEPSEEK_V3_YARN, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
    "bos_token_id": 0, "eos_token_id": 1,
}


def rope_case(name, config, rotary, apply, layout, positions, heads, rng, softmax_scale=None):
    dim = rotary.inv_freq.shape[0] * 2
    pos = torch.tensor([positions])
    x = f32_rows(rng, len(positions) * heads, dim).view(1, len(positions), heads, dim).transpose(1, 2)  # [1, heads, P, dim]
    cos, sin = rotary(x, pos)  # [1, P, dim] = cat(freqs, freqs)
    half = dim // 2
    if not (torch.equal(cos[..., :half], cos[..., half:]) and torch.equal(sin[..., :half], sin[..., half:])):
        raise SystemExit("rotary cos/sin halves differ")
    q, _ = apply(x, x, cos, sin)
    case = {"name": name, "config": config, "layout": layout, "positions": positions, "heads": heads,
            "inv_freq": arr(rotary.inv_freq), "attention_scaling": float(rotary.attention_scaling),
            "cos": arr(cos[0, :, :half]), "sin": arr(sin[0, :, :half]),
            # vectors as [position][head * dim], before and after the rotation
            "input": arr(x[0].transpose(0, 1).reshape(len(positions), heads * dim)),
            "output": arr(q[0].transpose(0, 1).reshape(len(positions), heads * dim))}
    if softmax_scale is not None:
        case["softmax_scale"] = softmax_scale
    return case


def rope_goldens(fixtures, out_dir, seed):
    rng = np.random.default_rng(seed)
    cases = []

    mixtral_cfg = json.loads((fixtures / "mixtral" / "model" / "config.json").read_text())
    hf = MixtralConfig(**{k: v for k, v in mixtral_cfg.items() if k != "architectures"})
    cases.append(rope_case("mixtral default (NeoX rotate_half)", mixtral_cfg, mx.MixtralRotaryEmbedding(hf),
                           mx.apply_rotary_pos_emb, "as_is", [0, 1, 2, 5, 17, 100, 1000, 4095], 2, rng))

    ds_cfg = json.loads((fixtures / "deepseek_v3" / "model" / "config.json").read_text())
    hf = DeepseekV3Config(**{k: v for k, v in ds_cfg.items() if k != "architectures"})
    cases.append(rope_case("deepseek_v3 fixture (interleaved, default frequencies)", ds_cfg, ds.DeepseekV3RotaryEmbedding(hf),
                           ds.apply_rotary_pos_emb_interleave, "deinterleaved", [0, 1, 3, 64, 4095], 2, rng))

    variants = [
        ("DeepSeek-V3 YaRN (factor 40, mscale = mscale_all_dim = 1)", DEEPSEEK_V3_CONFIG),
        ("YaRN with mscale 0.707 != mscale_all_dim 1 (cos/sin scaled)", dict(
            DEEPSEEK_V3_CONFIG, max_position_embeddings=65536,
            rope_scaling={"type": "yarn", "factor": 16, "original_max_position_embeddings": 4096,
                          "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 1.0})),
    ]
    for name, cfgd in variants:
        hf = DeepseekV3Config(**{k: copy.deepcopy(v) for k, v in cfgd.items() if k != "architectures"})
        rotary = ds.DeepseekV3RotaryEmbedding(hf)
        if rotary.rope_type != "yarn":
            raise SystemExit("expected yarn")
        with torch.device("meta"):  # only the softmax scale is needed, not 7168-wide weights
            scale = ds.DeepseekV3Attention(hf, 0).scaling
        cases.append(rope_case(name, cfgd, rotary, ds.apply_rotary_pos_emb_interleave, "deinterleaved",
                               [0, 1, 2, 7, 100, 4095, 4096, 32768, cfgd["max_position_embeddings"] - 1], 1, rng,
                               softmax_scale=scale))
    write(out_dir / "rope.json", {"meta": dict(META, note=(
        "cos/sin hold the first half of HF's cat(freqs, freqs), i.e. one value per frequency. layout 'deinterleaved': "
        "HF's apply_rotary_pos_emb_interleave returns [rotated even dims..., rotated odd dims...] of each head, where "
        "an engine that rotates pairs (2i, 2i+1) in place has them at 2i and 2i+1; attention is invariant to this "
        "shared permutation of q and k. HF computes the angles position * inv_freq in float32.")),
        "cases": cases})


# ---------------------------------------------------------------- main

def main():
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixtures", type=Path, default=root.parent / "shared" / "fixtures")
    ap.add_argument("--out", type=Path, default=root / "epserve-model" / "src" / "test" / "resources" / "goldens")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)

    for i, name in enumerate(FIXTURES):
        print(name)
        model_goldens(name, load(args.fixtures / name / "model"), args.out / name, seed=1000 + i)

    name = "deepseek_v3_nolora_yarn"
    print(name)
    synthetic_deepseek(args.out / name / "model", seed=77)
    model_goldens(name, load(args.out / name / "model"), args.out / name, seed=2000)

    print("rope")
    rope_goldens(args.fixtures, args.out / "rope", seed=3000)

    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
