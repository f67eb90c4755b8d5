#!/usr/bin/env python3
"""PyTorch peer for bench_mamba: transformers' pure-PyTorch (slow) path on this CPU, and the 130M-class checkpoints.

    python bench/mamba_peer.py --make-lm DIR      # writes DIR/mamba-130m-f32 and DIR/mamba-130m-bf16 (random weights,
                                                  # the state-spaces/mamba-130m-hf shape: d_model 768, 24 layers, vocab 50280)
    python bench/mamba_peer.py --json OUT.json [--lm DIR,...]

Measures (torch CPU, threads as given by --threads, default 1 for the per-stream rows):
- one Mamba block (MambaModel, 1 layer, hidden 256, state 16, expand 2) and one Mamba-2 block (hidden 256, state 64,
  head_dim 64, 1 group), stepped one frame at a time through transformers' cache (its `step` path): ns per frame;
- the same blocks over 4096 frames at once (whole-sequence slow path): ns per frame;
- a 130M-class MambaForCausalLM token step with the cache (F32 and BF16 weights): ms per token, and its load time.
mamba_ssm's own `step` needs CUDA to install and is not measured here.
"""
import argparse
import json
import os
import time

import torch
from transformers import Mamba2Config, Mamba2Model, MambaConfig, MambaForCausalLM, MambaModel


def best_of(fn, reps=3):
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def block_rows(threads):
    torch.set_num_threads(threads)
    rows = {}
    for name, model in (("mamba", MambaModel(MambaConfig(hidden_size=256, state_size=16, num_hidden_layers=1, vocab_size=16))),
                        ("mamba2", Mamba2Model(Mamba2Config(hidden_size=256, state_size=64, num_hidden_layers=1, num_heads=8,
                                                            head_dim=64, n_groups=1, vocab_size=16, chunk_size=64)))):
        model.eval()
        x = torch.randn(1, 4096, 256)
        with torch.no_grad():
            steps = 256

            def step():
                out = model(inputs_embeds=x[:, :1], use_cache=True)
                cache = out.cache_params
                for t in range(1, steps):
                    out = model(inputs_embeds=x[:, t:t + 1], cache_params=cache, use_cache=True)
                    cache = out.cache_params
            rows[f"{name}_step_ns_per_frame"] = best_of(step) / steps * 1e9
            rows[f"{name}_whole_ns_per_frame"] = best_of(lambda: model(inputs_embeds=x)) / x.shape[1] * 1e9
    return rows


def make_lm(root):
    torch.manual_seed(0)
    cfg = MambaConfig(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=24, expand=2)
    m = MambaForCausalLM(cfg).eval()
    m.save_pretrained(os.path.join(root, "mamba-130m-f32"))
    m.to(torch.bfloat16).save_pretrained(os.path.join(root, "mamba-130m-bf16"))


def lm_rows(dirs, threads):
    torch.set_num_threads(threads)
    rows = {}
    for d in dirs:
        t = time.perf_counter()
        m = MambaForCausalLM.from_pretrained(d).eval()
        load = time.perf_counter() - t
        ids = torch.randint(0, 1000, (1, 40))
        with torch.no_grad():
            out = m(ids[:, :1], use_cache=True)
            cache = out.cache_params

            def step():
                nonlocal cache
                for k in range(1, 21):
                    cache = m(ids[:, k:k + 1], cache_params=cache, use_cache=True).cache_params
            ms = best_of(step, 2) / 20 * 1e3
        rows[os.path.basename(d.rstrip("/"))] = {"load_s": load, "ms_per_token": ms, "dtype": str(m.dtype), "threads": threads}
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-lm")
    ap.add_argument("--json")
    ap.add_argument("--lm", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lm-threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    if a.make_lm:
        make_lm(a.make_lm)
        return
    res = {"torch": torch.__version__, "blocks": block_rows(a.threads), "threads": a.threads}
    if a.lm:
        res["lm"] = lm_rows([d for d in a.lm.split(",") if d], a.lm_threads)
    print(json.dumps(res, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
