#!/usr/bin/env python3
"""Golden files for Mamba, Mamba-2 and FalconMamba from Hugging Face `transformers` (its pure-PyTorch path).

    pip install torch transformers safetensors
    python tests/golden/make_mamba_golden.py [--out-dir tests/golden/mamba] [--mamba-repo PATH --mamba-commit HASH]

For every case it writes a checkpoint directory exactly as `save_pretrained` writes it (`<case>/config.json` and
`<case>/model.safetensors`, or shards with `model.safetensors.index.json`) and `<case>.io.safetensors` with
- `tokens` [T] F32 (integer token ids),
- `logits` [T, V] F32: the model in float32 over the whole sequence (`model(input_ids).logits`),
- `logits_step` [T, V] F32: the same model stepped token by token through its cache (`cache_params`),
- `logits_f64` [T, V] F64: the model after `.double()`, whole sequence.
Weights are the transformers initialisation moved off it with fixed seeds (every tensor += N(0, 0.1²), A_log +=
N(0, 0.3²)), so no parameter sits at a special value. CPU, one thread: byte-for-byte reproducible.

`mambassm_tiny/` is the `mamba_tiny` model written as `mamba_ssm` saves a `MambaLMHeadModel` (its config.json keys,
`backbone.embedding.weight`, vocabulary padded to `pad_vocab_size_multiple`): its logits are those of `mamba_tiny`
on the padded vocabulary (the padding rows are zero here, so their logits are 0).
`signal_mamba` / `signal_mamba2` are signal models (Linear encoder -> blocks -> Linear decoder) built with
models/train/ssmtrain/mamba.py and exported to the native file (`<case>.model.safetensors`, F32); their
`<case>.io.safetensors` holds `input` [T, Cin] F32 and `output_f64` [T, Cout]: the ssmtrain module in float64 on the
exported (float32) weights.

With `--mamba-repo PATH` (a checkout of state-spaces/mamba; nothing of it is copied here) the authors' pure-PyTorch
reference functions `selective_scan_ref` (mamba_ssm/ops/selective_scan_interface.py) and `ssd_minimal_discrete`
(mamba_ssm/modules/ssd_minimal.py) are loaded from it (by `ast`, since importing those modules needs the CUDA/Triton
kernels) and fed the intermediate tensors of transformers' layer-0 mixers; their agreement with transformers, and that
of the ssmtrain mirrors, is recorded in summary.json under "cross_checks".
The versions used are recorded in summary.json.
"""

import argparse
import ast
import json
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (FalconMambaConfig, FalconMambaForCausalLM, Mamba2Config, Mamba2ForCausalLM, MambaConfig,
                          MambaForCausalLM)

T = 24
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "train"))
from ssmtrain.mamba import Mamba2Mixer, MambaMixer, MambaSignalModel, export_mamba_native  # noqa: E402


def load_reference_functions(repo):
    """selective_scan_ref and ssd_minimal_discrete (+ segsum) from a state-spaces/mamba checkout, without importing
    their modules (which import the CUDA/Triton kernels)."""
    import einops
    import torch.nn.functional as F
    scope = {"torch": torch, "F": F, "rearrange": einops.rearrange, "repeat": einops.repeat}
    for rel, names in (("mamba_ssm/ops/selective_scan_interface.py", {"selective_scan_ref"}),
                       ("mamba_ssm/modules/ssd_minimal.py", {"segsum", "ssd_minimal_discrete"})):
        tree = ast.parse(open(os.path.join(repo, rel)).read())
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
        exec(compile(ast.Module(body=funcs, type_ignores=[]), rel, "exec"), scope)
    return scope["selective_scan_ref"], scope["ssd_minimal_discrete"]


def cross_checks(models, repo):
    """Layer-0 mixers of transformers against the authors' reference functions and against the ssmtrain mirrors."""
    import torch.nn.functional as F
    out = {}
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        hf = models["mamba_tiny"].backbone.layers[0].mixer
        u = torch.randn(1, T, hf.hidden_size, generator=g)
        ref = hf(u)
        ours = MambaMixer(hf.hidden_size, d_state=hf.ssm_state_size, d_conv=hf.conv_kernel_size,
                          expand=hf.intermediate_size // hf.hidden_size, dt_rank=hf.time_step_rank)
        ours.load_state_dict(hf.state_dict())
        out["mamba_tiny ssmtrain MambaMixer vs transformers"] = float((ours(u) - ref).abs().max())
        hf2 = models["mamba2_tiny"].backbone.layers[0].mixer
        u2 = torch.randn(1, T, hf2.hidden_size, generator=g)
        ref2 = hf2(u2)
        ours2 = Mamba2Mixer(hf2.hidden_size, d_state=hf2.ssm_state_size, d_conv=hf2.conv_kernel_size,
                            expand=hf2.intermediate_size // hf2.hidden_size, head_dim=hf2.head_dim,
                            n_groups=hf2.n_groups, chunk_size=hf2.chunk_size, norm_eps=hf2.layer_norm_epsilon)
        ours2.load_state_dict(hf2.state_dict())
        out["mamba2_tiny ssmtrain Mamba2Mixer vs transformers"] = float((ours2(u2) - ref2).abs().max())
        hff = models["falcon_mamba_tiny"].backbone.layers[0].mixer
        uf = torch.randn(1, T, hff.hidden_size, generator=g)
        oursf = MambaMixer(hff.hidden_size, d_state=hff.ssm_state_size, d_conv=hff.conv_kernel_size,
                           expand=hff.intermediate_size // hff.hidden_size, dt_rank=hff.time_step_rank,
                           bcdt_rms_eps=hff.rms_eps)
        oursf.load_state_dict({k: v for k, v in hff.state_dict().items() if "layernorm" not in k})
        out["falcon_mamba_tiny ssmtrain MambaMixer vs transformers"] = float((oursf(uf) - hff(uf)).abs().max())
        if repo is None:
            return out
        selective_scan_ref, ssd_minimal_discrete = load_reference_functions(repo)
        # Mamba: transformers' own projections and convolution, the authors' scan.
        E, N, R = hf.intermediate_size, hf.ssm_state_size, hf.time_step_rank
        x, z = hf.in_proj(u).transpose(1, 2).chunk(2, dim=1)
        x = F.silu(hf.conv1d(x)[..., :T])
        dt, B, C = hf.x_proj(x.transpose(1, 2)).split([R, N, N], dim=-1)
        delta = hf.dt_proj.weight @ dt.transpose(1, 2)
        y = selective_scan_ref(x, delta, -torch.exp(hf.A_log.float()), B.transpose(1, 2), C.transpose(1, 2), hf.D.float(),
                               z=z, delta_bias=hf.dt_proj.bias.float(), delta_softplus=True)
        out["mamba_tiny selective_scan_ref vs transformers"] = float((hf.out_proj(y.transpose(1, 2)) - ref).abs().max())
        # Mamba-2: transformers' projections, convolution and gated norm, the authors' SSD (one group at a time: the
        # minimal function takes one group for all heads).
        E2, N2, G2, H2, P2 = hf2.intermediate_size, hf2.ssm_state_size, hf2.n_groups, hf2.num_heads, hf2.head_dim
        zz, xbc, dt2 = hf2.in_proj(u2).split([E2, hf2.conv_dim, H2], dim=-1)
        xbc = F.silu(hf2.conv1d(xbc.transpose(1, 2))[..., :T].transpose(1, 2))
        x2, B2, C2 = xbc.split([E2, G2 * N2, G2 * N2], dim=-1)
        dt2 = F.softplus(dt2 + hf2.dt_bias)
        A2 = -torch.exp(hf2.A_log.float())
        Q = hf2.chunk_size
        pad = (-T) % Q
        X = F.pad((x2.reshape(1, T, H2, P2) * dt2[..., None]), (0, 0, 0, 0, 0, pad))
        Ad = F.pad(dt2 * A2, (0, 0, 0, pad))
        Bg = F.pad(B2.reshape(1, T, G2, N2), (0, 0, 0, 0, 0, pad))
        Cg = F.pad(C2.reshape(1, T, G2, N2), (0, 0, 0, 0, 0, pad))
        hpg = H2 // G2
        ys = [ssd_minimal_discrete(X[:, :, k * hpg:(k + 1) * hpg], Ad[:, :, k * hpg:(k + 1) * hpg], Bg[:, :, k:k + 1],
                                   Cg[:, :, k:k + 1], Q)[0] for k in range(G2)]
        y2 = torch.cat(ys, dim=2)[:, :T] + hf2.D[:, None] * x2.reshape(1, T, H2, P2)
        y2 = hf2.out_proj(hf2.norm(y2.reshape(1, T, E2), zz))
        out["mamba2_tiny ssd_minimal_discrete vs transformers"] = float((y2 - ref2).abs().max())
    return out


def signal_case(out_dir, case, family, seed, **kw):
    torch.manual_seed(seed)
    model = MambaSignalModel(2, 3, d_model=16, n_layers=2, family=family, **kw).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.1 * torch.randn_like(p))
            p.copy_(p.float())  # the exported file is F32: the float64 reference uses the same values
    path = os.path.join(out_dir, case + ".model.safetensors")
    export_mamba_native(model, path, sample_rate=0, name=case, description="ssmtrain signal model (golden)")
    x = torch.randn(1, 300, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y64 = model.double()(x.double())[0]
    save_file({"input": x[0].contiguous(), "output_f64": y64.contiguous()}, os.path.join(out_dir, case + ".io.safetensors"),
              metadata={"golden": f"ssmtrain (models/train), torch {torch.__version__}"})
    return {"class": "ssmtrain MambaSignalModel", "family": family, "output_rms": float(y64.pow(2).mean().sqrt())}


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if name.endswith("A_log") else 0.1
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def run(model, ids):
    with torch.no_grad():
        full = model(ids).logits[0]
        out = model(ids[:, :1], use_cache=True)
        cache, steps = out.cache_params, [out.logits[0]]
        for t in range(1, ids.shape[1]):
            out = model(ids[:, t:t + 1], cache_params=cache, use_cache=True)
            cache = out.cache_params
            steps.append(out.logits[0])
        step = torch.cat(steps, 0)
        f64 = type(model)(model.config).double().eval()
        f64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
        full64 = f64(ids).logits[0]
    return full, step, full64


def save_case(out_dir, case, model, ids, shard=None):
    d = os.path.join(out_dir, case)
    shutil.rmtree(d, ignore_errors=True)
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(d, **kw)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(d, extra)):
            os.remove(os.path.join(d, extra))
    full, step, full64 = run(model, ids)
    save_file({"tokens": ids[0].float().contiguous(), "logits": full.float().contiguous(),
               "logits_step": step.float().contiguous(), "logits_f64": full64.contiguous()},
              os.path.join(out_dir, case + ".io.safetensors"),
              metadata={"golden": f"transformers {transformers.__version__}, torch {torch.__version__}"})
    return {"files": sorted(os.listdir(d)), "class": type(model).__name__,
            "float32_vs_float64_max_abs": float((full.double() - full64).abs().max()),
            "step_vs_full_max_abs": float((step - full).abs().max()),
            "logits_rms": float(full64.pow(2).mean().sqrt())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mamba-repo", default=None, help="a state-spaces/mamba checkout, for the cross-checks")
    ap.add_argument("--mamba-commit", default=None, help="its commit, recorded in summary.json")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "mamba"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(0)
    summary = {"transformers": transformers.__version__, "torch": torch.__version__, "tolerance":
               "1e-4 x max(rms(logits), 1e-3), max abs difference, float32", "cases": {}}
    ids = torch.randint(0, 60, (1, T), generator=torch.Generator().manual_seed(1))

    cases = [
        ("mamba_tiny", MambaForCausalLM, MambaConfig(vocab_size=64, hidden_size=16, state_size=8, num_hidden_layers=2), None),
        ("mamba_bias", MambaForCausalLM, MambaConfig(vocab_size=40, hidden_size=16, state_size=4, num_hidden_layers=2,
                                                     expand=3, conv_kernel=3, use_bias=True, use_conv_bias=False,
                                                     time_step_rank=5, layer_norm_epsilon=1e-6,
                                                     tie_word_embeddings=False), None),
        ("mamba_sharded", MambaForCausalLM, MambaConfig(vocab_size=64, hidden_size=16, state_size=8, num_hidden_layers=3), "8KB"),
        ("mamba2_tiny", Mamba2ForCausalLM, Mamba2Config(vocab_size=64, hidden_size=16, state_size=8, num_heads=4, head_dim=8,
                                                        n_groups=2, num_hidden_layers=2, chunk_size=8), None),
        ("mamba2_limit", Mamba2ForCausalLM, Mamba2Config(vocab_size=48, hidden_size=16, state_size=16, num_heads=8, head_dim=4,
                                                         n_groups=1, num_hidden_layers=2, chunk_size=5, conv_kernel=3,
                                                         time_step_limit=(0.01, 0.5), use_bias=True,
                                                         tie_word_embeddings=True), None),
        ("falcon_mamba_tiny", FalconMambaForCausalLM, FalconMambaConfig(vocab_size=64, hidden_size=16, state_size=8,
                                                                       num_hidden_layers=2, mixer_rms_eps=1e-6), None),
    ]
    models = {}
    for i, (case, cls, cfg, shard) in enumerate(cases):
        torch.manual_seed(100 + i)
        model = perturb(cls(cfg).eval(), 200 + i)
        tok = ids % cfg.vocab_size
        summary["cases"][case] = save_case(args.out_dir, case, model, tok, shard)
        models[case] = model
        if case == "mamba_tiny":
            tiny_model, tiny_tok = model, tok

    # mamba_tiny as mamba_ssm saves a MambaLMHeadModel: vocabulary 60 padded to 64 (pad_vocab_size_multiple 16).
    d = os.path.join(args.out_dir, "mambassm_tiny")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v.clone().contiguous()
          for k, v in tiny_model.state_dict().items() if k != "lm_head.weight"}
    sd["backbone.embedding.weight"][60:] = 0.0
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    c = tiny_model.config
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"d_model": c.hidden_size, "d_intermediate": 0, "n_layer": c.num_hidden_layers, "vocab_size": 60,
                   "ssm_cfg": {"layer": "Mamba1", "d_state": c.state_size, "d_conv": c.conv_kernel, "expand": c.expand},
                   "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
                   "fused_add_norm": True, "pad_vocab_size_multiple": 16, "tie_embeddings": True}, f, indent=2)
    hf = MambaForCausalLM(c).eval()
    hf.load_state_dict({**{k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in sd.items()},
                        "lm_head.weight": sd["backbone.embedding.weight"]})
    summary["cases"]["mambassm_tiny"] = {"files": sorted(os.listdir(d)), "class": "mamba_ssm MambaLMHeadModel layout"}
    full, step, full64 = run(hf, tiny_tok)
    save_file({"tokens": tiny_tok[0].float().contiguous(), "logits": full.float().contiguous(),
               "logits_step": step.float().contiguous(), "logits_f64": full64.contiguous()},
              os.path.join(args.out_dir, "mambassm_tiny.io.safetensors"),
              metadata={"golden": f"transformers {transformers.__version__}, torch {torch.__version__}"})

    summary["cases"]["signal_mamba"] = signal_case(args.out_dir, "signal_mamba", "mamba", 11, d_state=8)
    summary["cases"]["signal_mamba2"] = signal_case(args.out_dir, "signal_mamba2", "mamba2", 12, d_state=8, head_dim=8,
                                                    n_groups=2, chunk_size=16)
    summary["cross_checks"] = cross_checks(models, args.mamba_repo)
    if args.mamba_repo:
        summary["mamba_ssm_commit"] = args.mamba_commit or "unknown"
    with open(os.path.join(args.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
