#!/usr/bin/env python3
"""Golden files for the `ema` layer from MEGA's reference code itself (facebookresearch/mega, PyTorch), see
docs/families-a.md.

    git clone https://github.com/facebookresearch/mega third_party/mega
    git -C third_party/mega checkout aeaa4b44592cd1d60a9a34554e359eda2a62b03b
    pip install torch numpy safetensors
    python tests/golden/make_ema_golden.py [--repo third_party/mega] [--out-dir tests/golden/lti_a]

Only `fairseq/modules/exponential_moving_average.py` (`MultiHeadEMA`) is loaded, by path; its one fairseq import,
the `with_incremental_state` class decorator, is replaced by a stub that adds get/set_incremental_state over a
plain dict (all the module needs for its incremental path). CPU, one thread, float32 (and .double() for output_f64).
The state_dict is written under the layer's name unchanged (`ema.delta`, `ema.alpha`, `ema.beta`, `ema.gamma`,
`ema.omega`). Cases:
- ema_layer: MultiHeadEMA(16) with its defaults (ndim=2, no truncation), T=500, output = its FFT forward;
- ema_trunc: truncation=64, T=500;
- ema_stack: Linear(1->128), 4 x [x + MultiHeadEMA(128, ndim=16)(LayerNorm(x))], Linear(128->4), T=256 (ndim 16 as
  MEGA's models use); the residual/norm/linear glue is torch's own nn modules.
Parameters are the module's own random init (reset_parameters), with the seeds below. The script also runs the
reference's incremental path (`incremental_state`, blocks of 1 and 37 frames) and records its distance to the FFT
forward in ema_summary.json. Tolerance in the C++ test: max|ours - ref| <= 1e-4 * max(1, RMS(ref)).
"""
import argparse
import copy
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def with_incremental_state(cls):  # stand-in for fairseq.incremental_decoding_utils.with_incremental_state
    def get(self, state, key):
        return state.get(f"{id(self)}.{key}")

    def put(self, state, key, value):
        state[f"{id(self)}.{key}"] = value
        return state

    cls.get_incremental_state, cls.set_incremental_state = get, put
    return cls


def load_reference(repo):
    for name in ("fairseq", "fairseq.incremental_decoding_utils"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["fairseq.incremental_decoding_utils"].with_incremental_state = with_incremental_state
    spec = importlib.util.spec_from_file_location("mega_ema", os.path.join(repo, "fairseq", "modules",
                                                                          "exponential_moving_average.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def commit_of(repo):
    try:
        return subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


class Stack(torch.nn.Module):
    def __init__(self, ref, H, N, L):
        super().__init__()
        self.encoder = torch.nn.Linear(1, H)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(H) for _ in range(L)])
        self.layers = torch.nn.ModuleList([ref.MultiHeadEMA(H, ndim=N) for _ in range(L)])
        self.decoder = torch.nn.Linear(H, 4)

    def forward(self, x):  # [T, 1, 1]
        x = self.encoder(x)
        for n, l in zip(self.norms, self.layers):
            x = x + l(n(x))
        return self.decoder(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.join(ROOT, "third_party", "mega"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "lti_a"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(1)
    ref = load_reference(args.repo)
    commit = commit_of(args.repo)
    meta = {"reference": "facebookresearch/mega fairseq/modules/exponential_moving_average.py", "commit": commit,
            "torch": torch.__version__, "tolerance": "max|ours-ref| <= 1e-4*max(1,RMS(ref))"}
    summary = {"meta": meta}

    def save(case, model, layers, x, prefix=""):
        model.eval()
        with torch.no_grad():
            y32 = model(x)[:, 0].numpy()
            y64 = copy.deepcopy(model).double()(x.double())[:, 0].numpy()
        sd = {prefix + k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
        cfg = {"format": "ssmstream", "version": 1, "name": case,
               "description": f"golden: facebookresearch/mega MultiHeadEMA @ {commit}", "sample_rate": 0,
               "layers": layers}
        save_file(sd, os.path.join(args.out_dir, case + ".model.safetensors"), metadata={"ssmstream": json.dumps(cfg)})
        c = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        save_file({"input": c(x[:, 0].numpy()), "output": c(y32), "output_f64": c(y64)},
                  os.path.join(args.out_dir, case + ".io.safetensors"), metadata={"golden": json.dumps(meta)})
        summary[case] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}
        return y32

    for case, trunc, T in [("ema_layer", None, 500), ("ema_trunc", 64, 500)]:
        D = 16
        torch.manual_seed(5 if trunc is None else 6)
        m = ref.MultiHeadEMA(D, truncation=trunc)
        x = torch.randn(T, 1, D)
        layer = {"type": "ema", "name": "ema", "d_model": D, "ndim": 2}
        if trunc:
            layer["truncation"] = trunc
        y = save(case, m, [layer], x, prefix="ema.")
        if trunc is None:  # the reference's own incremental (streaming) path
            for block in (1, 37):
                state, outs = {}, []
                with torch.no_grad():
                    for t in range(0, T, block):
                        outs.append(m(x[t:t + block], incremental_state=state)[:, 0])
                summary[case][f"incremental_block{block}_vs_fft"] = float(np.max(np.abs(torch.cat(outs).numpy() - y)))

    H, N, T, NL = 128, 16, 256, 4
    torch.manual_seed(7)
    m = Stack(ref, H, N, NL)
    x = torch.randn(T, 1, 1)
    layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
    for i in range(NL):
        layers.append({"type": "residual", "prenorm": True,
                       "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": H},
                       "body": [{"type": "ema", "name": f"layers.{i}", "d_model": H, "ndim": N}]})
    layers.append({"type": "linear", "name": "decoder", "in": H, "out": 4})
    save("ema_stack", m, layers, x)
    with open(os.path.join(args.out_dir, "ema_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
