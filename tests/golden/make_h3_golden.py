#!/usr/bin/env python3
"""Golden files for the `h3` layer from the AUTHORS' code, HazyResearch/H3 `src/models/ssm/h3.py` (class H3).

    python tests/golden/make_h3_golden.py --h3-repo third_party/H3 [--out-dir tests/golden/h3]

third_party/H3 is a checkout of https://github.com/HazyResearch/H3 at commit 5c4d06b (only src/models/ssm, src/ops,
src/utils are needed; fetch it like third_party/s4, see tests/golden/README.md). Their src/utils/utils.py imports
`pytorch_lightning.utilities.rank_zero_only` to decorate a logger: a stub with an identity `rank_zero_only` is
registered when pytorch_lightning is absent. The H3 module runs on CPU with its pure-torch paths
(use_fast_fftconv=False, no CUDA Vandermonde).

Per case: <case>.model.safetensors (native; the H3 state_dict tensors under their own names, prefixed by the layer
name) and <case>.io.safetensors with `input` [T, Cin], `output` (their forward, float32: FFT convolution view),
`output_f64` (their module after .double()). Layer cases also record their recurrent view (`step`, after
`_setup_step`) against their forward. Tolerance of the C++ test (tests/test_lti_b.cpp): max|ours - ref64| <=
1e-4 * max(1, RMS(ref64)), float32 (and vs their float32 output: their own float32 error + the same).
"""
import argparse
import copy
import json
import math
import os
import sys
import types

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
COMMIT = "5c4d06b5795405170387c80998b58d76179a8a1a"


def load_h3(repo):
    repo = os.path.abspath(repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    try:
        import pytorch_lightning.utilities  # noqa: F401
    except ImportError:
        pl = types.ModuleType("pytorch_lightning")
        ut = types.ModuleType("pytorch_lightning.utilities")
        ut.rank_zero_only = lambda fn: fn
        pl.utilities = ut
        sys.modules.setdefault("pytorch_lightning", pl)
        sys.modules.setdefault("pytorch_lightning.utilities", ut)
    import importlib
    import warnings
    warnings.filterwarnings("ignore")
    return importlib.import_module("src.models.ssm.h3")


def perturb(m, g, half):
    """Move every H3 parameter off its init: log_dt log-uniform in [1e-3, 1e-1], inv_A_real += N(0, 0.5^2),
    A_imag += N(0, 1), diagonal B, C += N(0, 0.3^2), shift B, C += N(0, 0.3^2), D, ssm_k_D += N(0, 0.3^2),
    projections += N(0, 0.05^2). `half`: round every tensor to float16 (the file stores F16)."""
    n = lambda t, s: torch.randn(t.shape, generator=g) * s  # noqa: E731
    kd, ks = m.kernel.kernel, m.ssm_k_kernel.kernel
    with torch.no_grad():
        kd.log_dt.copy_(torch.rand(kd.log_dt.shape, generator=g) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        kd.inv_A_real.add_(n(kd.inv_A_real, 0.5))
        kd.A_imag.add_(n(kd.A_imag, 1.0))
        for t in (kd.B, kd.C, ks.B, ks.C, m.D, m.ssm_k_D):
            t.add_(n(t, 0.3))
        for lin in (m.q_proj, m.k_proj, m.v_proj, m.output_linear):
            lin.weight.add_(n(lin.weight, 0.05))
            lin.bias.add_(n(lin.bias, 0.05))
        if half:
            for t in list(m.parameters()) + list(m.buffers()):
                t.copy_(t.half().float())


def layer_cfg(name, m):
    kd = m.kernel.kernel
    assert m.head_dim == 1 and not m.use_fast_fftconv and kd.channels == 1 and kd.bandlimit is None and not kd.force_real
    return {"type": "h3", "name": name, "d_model": m.d_model, "d_state": m.N, "head_dim": 1, "disc": kd.disc,
            "real_type": kd.real_type}


def sd_arrays(prefix, m, dtype):
    return {prefix + k: np.ascontiguousarray(v.detach().numpy().astype(dtype)) for k, v in m.state_dict().items()}


def run_pair(fn, module, inp):
    with torch.no_grad():
        y32 = fn(module, torch.from_numpy(inp)).numpy()
        y64 = fn(copy.deepcopy(module).double(), torch.from_numpy(inp).double()).numpy()
    return np.ascontiguousarray(y32), np.ascontiguousarray(y64)


def step_outputs(m, inp):
    b = copy.deepcopy(m)
    with torch.no_grad():
        b.ssm_k_kernel._setup_step()
        b.kernel._setup_step()
        sk = b.ssm_k_kernel.default_state(1)
        s = b.kernel.default_state(1)
        ys = []
        for t in range(inp.shape[0]):
            y, sk, s = b.step(torch.from_numpy(inp[t])[None, None], sk, s)
            ys.append(y[0, 0].numpy())
    return np.stack(ys)


def layer_case(h3, g, seed, H, T, **kw):
    torch.manual_seed(seed)
    m = h3.H3(H, **kw).eval()
    perturb(m, g, half=False)
    inp = torch.randn(T, H, generator=g).numpy()
    fn = lambda mod, x: mod(x[None])[0]  # noqa: E731
    y32, y64 = run_pair(fn, m, inp)
    ystep = step_outputs(m, inp)
    config = {"format": "ssmstream", "version": 1, "name": "h3-golden", "sample_rate": 0,
              "description": f"HazyResearch/H3@{COMMIT[:7]} H3({H}, {kw}) golden (make_h3_golden.py)",
              "layers": [layer_cfg("h3", m)]}
    info = {"module": f"src/models/ssm/h3.py H3(d_model={H}, {kw})",
            "ref_step_vs_conv_f32": float(np.abs(ystep - y32).max() / max(1.0, np.sqrt(np.mean(y32 ** 2))))}
    return config, sd_arrays("h3.", m, np.float32), inp, y32, y64, info


class Stack(torch.nn.Module):
    """Our test harness around their H3 layers (the H3 repository's LM wraps them in blocks with MLPs; this keeps
    only what the `h3` layer covers): Linear encoder, n × pre-norm residual x + H3(LayerNorm(x)), Linear decoder."""

    def __init__(self, h3, d_in, d_out, H, n, **kw):
        super().__init__()
        self.encoder = torch.nn.Linear(d_in, H)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(H) for _ in range(n)])
        self.layers = torch.nn.ModuleList([h3.H3(H, **kw) for _ in range(n)])
        self.decoder = torch.nn.Linear(H, d_out)

    def forward(self, x):
        x = self.encoder(x)
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))
        return self.decoder(x)


def stack_case(h3, g, seed, H, n, T):
    torch.manual_seed(seed)
    m = Stack(h3, 1, 1, H, n).eval()
    with torch.no_grad():
        for layer in m.layers:
            perturb(layer, g, half=True)
        for p in list(m.encoder.parameters()) + list(m.decoder.parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
            p.copy_(p.half().float())
        for norm in m.norms:
            norm.weight.copy_((1 + torch.randn(H, generator=g) * 0.3).half().float())
            norm.bias.copy_((torch.randn(H, generator=g) * 0.2).half().float())
    inp = torch.randn(T, 1, generator=g).numpy()
    y32, y64 = run_pair(lambda mod, x: mod(x[None])[0], m, inp)
    layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
    for i, layer in enumerate(m.layers):
        layers.append({"type": "residual", "prenorm": True, "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": H},
                       "body": [layer_cfg(f"layers.{i}", layer)]})
    layers.append({"type": "linear", "name": "decoder", "in": H, "out": 1})
    config = {"format": "ssmstream", "version": 1, "name": "h3-stack-golden", "sample_rate": 0, "layers": layers,
              "description": f"HazyResearch/H3@{COMMIT[:7]}: {n} x pre-norm residual H3({H}) golden"}
    tensors = {k: np.ascontiguousarray(v.detach().numpy().astype(np.float16)) for k, v in m.state_dict().items()}
    info = {"module": f"Linear(1, {H}), {n} x (x + H3({H}, defaults: d_state=64, diag-lin, bilinear)(LayerNorm(x))), "
                      f"Linear({H}, 1); weights rounded to float16 (the file stores F16)"}
    return config, tensors, inp, y32, y64, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--h3-repo", default=os.path.join(ROOT, "third_party", "H3"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "h3"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    h3 = load_h3(a.h3_repo)
    os.makedirs(a.out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(33)
    cases = {
        "h3_layer_default": lambda: layer_case(h3, g, 1, 16, 200),  # H3 defaults: d_state=64, diag-lin, bilinear
        "h3_layer_zoh": lambda: layer_case(h3, g, 2, 8, 200, d_state=16, disc="zoh", measure="diag-inv", n_ssm=2),
        "h3_stack_h128": lambda: stack_case(h3, g, 3, 128, 4, 512),
    }
    summary = {"reference": f"HazyResearch/H3@{COMMIT}", "torch": torch.__version__, "cases": {}}
    for case, make in cases.items():
        config, tensors, inp, y32, y64, info = make()
        save_file(tensors, os.path.join(a.out_dir, f"{case}.model.safetensors"), metadata={"ssmstream": json.dumps(config)})
        save_file({"input": np.ascontiguousarray(inp, np.float32), "output": y32.astype(np.float32), "output_f64": y64},
                  os.path.join(a.out_dir, f"{case}.io.safetensors"),
                  metadata={"golden": json.dumps({"reference": f"HazyResearch/H3@{COMMIT}", **info})})
        rms = float(np.sqrt(np.mean(y64 ** 2)))
        info.update({"T": int(inp.shape[0]), "rms_ref": rms, "ref_f32_vs_f64": float(np.abs(y32 - y64).max() / max(1.0, rms))})
        summary["cases"][case] = info
        print(case, json.dumps(info))
    with open(os.path.join(a.out_dir, "h3_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
