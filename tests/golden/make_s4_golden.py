#!/usr/bin/env python3
"""Golden files for the `s4` layer (S4 NPLR/DPLR) from the AUTHORS' code, state-spaces/s4 `models/s4/s4.py`.

    python tests/golden/make_s4_golden.py --s4-repo third_party/s4 [--out-dir tests/golden/s4]

Their `S4Block(mode='dplr')` (FFTConv around SSMKernelDPLR: Cauchy kernel + Woodbury at the roots of unity) is
run as is, on CPU with its pure-torch Cauchy fallback (`cauchy_naive`). For each case it writes
<case>.model.safetensors, the native file: the reference state_dict's tensors under their own names (the
`l_kernel` int64 buffer stored as an F64 scalar; `s4` layer config, docs/families-b.md), and <case>.io.safetensors
with `input` [T, Cin] F32, `output` [T, Cout] F32 (their forward, convolution view, float32) and `output_f64`
(their module after .double()). The state_dict is taken AFTER the first forward, as a user's checkpoint is: that
forward turns C into the length-L "C tilde" and sets l_kernel = L (`_setup_C`); T = L, so the reference kernel covers
the whole input. Layer cases also record the authors' own recurrent view (`setup_step()` + `step()`, dense mode).

Tolerance of the C++ test (tests/test_lti_b.cpp): max|ours - ref| <= 1e-4 * max(1, RMS(ref)), float32.
Deterministic (fixed seeds, one thread). Reference commit recorded in every file and in s4_summary.json.
"""

import argparse
import copy
import functools
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))
from ssmtrain import reference  # noqa: E402

COMMIT = "e757cef57d89e448c413de7325ed5601aceaac13"
TOL = "max|ours - ref| <= 1e-4 * max(1, RMS(ref)), float32"


def s4_layer_config(name, H, N, block, kernel):
    """The native `s4` layer for one of their S4Block modules (checks the options we implement)."""
    assert kernel.channels == 1 and not kernel.dt_fast and kernel.bandlimit is None and not kernel.is_real
    act = block.layer.activation.__class__.__name__
    acts = {"GELU": "gelu", "Identity": "id", "SiLU": "silu", "Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid"}
    if isinstance(block.output_linear, torch.nn.Identity):
        final = "none"
    else:
        final = "glu" if isinstance(block.output_linear[1], torch.nn.GLU) else "id"
    assert block.gate is None and block.bottleneck is None and not block.layer.bidirectional
    return {"type": "s4", "name": name, "d_model": H, "d_state": N, "rank": kernel.rank,
            "dt_transform": kernel.dt_transform, "real_transform": kernel.real_transform,
            "imag_transform": kernel.imag_transform, "activation": acts[act], "final_act": final}


def native_tensors(state_dict, dtype):
    """Their state_dict as numpy: int buffers (l_kernel) as F64 scalars, everything else in `dtype`."""
    out = {}
    for k, v in state_dict.items():
        v = v.detach().cpu()
        if v.dtype in (torch.int64, torch.int32):
            out[k] = np.asarray(v.numpy(), dtype=np.float64).reshape(v.shape)
        else:
            out[k] = np.ascontiguousarray(v.numpy().astype(dtype))
    return out


def write_case(out_dir, case, config, tensors, inp, y32, y64, info):
    meta = {"ssmstream": json.dumps(config)}
    save_file(tensors, os.path.join(out_dir, f"{case}.model.safetensors"), metadata=meta)
    golden = json.dumps({"reference": f"state-spaces/s4@{COMMIT}", "tolerance": TOL, **info})
    c = np.ascontiguousarray  # safetensors writes a strided (transposed) array's raw buffer
    save_file({"input": c(inp, np.float32), "output": c(y32, np.float32), "output_f64": c(y64, np.float64)},
              os.path.join(out_dir, f"{case}.io.safetensors"), metadata={"golden": golden})


def perturb_block(block, g, halfprec):
    """Move every parameter off its init (a "trained" checkpoint): dt log-uniform in the reference range, log(-Re A)
    += N(0, 0.5^2), Im A += N(0, 1) (kept >= 0 as the init asserts), B, C, P += N(0, 0.3^2), D += N(0, 0.3^2), output
    linear += N(0, 0.1^2). With `halfprec` every float tensor is rounded to float16 (the file stores F16)."""
    k = block.layer.kernel
    n = lambda t, s: torch.randn(t.shape, generator=g) * s  # noqa: E731
    with torch.no_grad():
        lo, hi = math.log(0.001), math.log(0.1)
        dt = torch.exp(torch.rand(k.inv_dt.shape, generator=g) * (hi - lo) + lo)
        k.inv_dt.copy_(torch.log(dt) if k.dt_transform == "exp" else torch.log(torch.expm1(dt)))
        k.A_real.add_(n(k.A_real, 0.5))
        k.A_imag.add_(n(k.A_imag, 1.0)).abs_()
        for t in (k.B, k.C, k.P):
            t.add_(n(t, 0.3))
        block.layer.D.add_(n(block.layer.D, 0.3))
        for p in block.output_linear.parameters():
            p.add_(n(p, 0.1))
        if halfprec:
            for p in block.parameters():
                p.copy_(p.half().float())


def clear_caches(module):
    """Drop the tensors their kernel caches as plain attributes (FFT nodes, step matrices): deepcopy refuses them."""
    for m in module.modules():
        for attr in ("omega", "z", "dA", "dB", "dC", "step_params"):
            if attr in m.__dict__:
                del m.__dict__[attr]


def run_pair(fn, module, inp):
    clear_caches(module)
    with torch.no_grad():
        y32 = fn(module, torch.from_numpy(inp)).numpy()
        clear_caches(module)
        y64 = fn(copy.deepcopy(module).double(), torch.from_numpy(inp).double()).numpy()
    return y32, y64


def block_fn(m, x):  # their S4Block, transposed=True: (B, H, L) in, (y, state) out
    return m(x.T[None])[0][0].T


def step_outputs(block, inp):
    """Their recurrent view: setup_step() then step() per sample (dense mode), float32."""
    clear_caches(block)
    b = copy.deepcopy(block)
    with torch.no_grad():
        b.setup_step()
        state = b.default_state(1)
        ys = []
        for t in range(inp.shape[0]):
            y, state = b.step(torch.from_numpy(inp[t])[None], state)
            ys.append(y[0].numpy())
    return np.stack(ys)


def layer_case(s4, g, seed, H, T, **kw):
    torch.manual_seed(seed)
    block = s4.S4Block(H, transposed=True, dropout=0.0, **kw).eval()
    x0 = torch.randn(1, H, T, generator=g)
    with torch.no_grad():
        block(x0)  # first forward: C -> C tilde for L = T, l_kernel = T (as every trained checkpoint has it)
    assert int(block.layer.kernel.l_kernel) == T
    perturb_block(block, g, halfprec=False)
    inp = torch.randn(T, H, generator=g).numpy()
    y32, y64 = run_pair(block_fn, block, inp)
    ystep = step_outputs(block, inp)
    k = block.layer.kernel
    cfg_layer = s4_layer_config("s4", H, 2 * k.N, block, k)
    config = {"format": "ssmstream", "version": 1, "name": "s4-golden", "sample_rate": 0, "layers": [cfg_layer],
              "description": f"state-spaces/s4@{COMMIT[:7]} S4Block({H}, {kw}) golden (make_s4_golden.py)"}
    tensors = {"s4." + k_: v for k_, v in native_tensors(block.state_dict(), np.float32).items()}
    # The saved checkpoint alone reproduces the output: a fresh module loaded from `tensors` (as a user would).
    fresh = s4.S4Block(H, transposed=True, dropout=0.0, **kw).eval()
    sd = {k_[3:]: torch.from_numpy(v.copy()) for k_, v in tensors.items()}
    sd["layer.kernel.l_kernel"] = torch.tensor(int(sd["layer.kernel.l_kernel"]))
    fresh.load_state_dict(sd, strict=True)
    with torch.no_grad():
        y_fresh = block_fn(fresh, torch.from_numpy(inp)).numpy()
    assert np.array_equal(y_fresh, y32), "the saved state_dict does not reproduce the module's output"
    info = {"module": f"models/s4/s4.py S4Block(d_model={H}, transposed=True, dropout=0, {kw})",
            "ref_step_vs_conv_f32": float(np.abs(ystep - y32).max() / max(1.0, np.sqrt(np.mean(y32 ** 2))))}
    return config, tensors, inp, y32, y64, info


def model_case(R, g, seed, H, n_layers, T, prenorm):
    s4 = R["s4"]
    S4Model = reference.s4model_class(R["repo"], S4D=functools.partial(s4.S4Block, mode="dplr"))
    torch.manual_seed(seed)
    ref = S4Model(d_input=1, d_output=1, d_model=H, n_layers=n_layers, dropout=0.0, prenorm=prenorm).eval()
    with torch.no_grad():
        ref(torch.randn(1, T, 1, generator=g))  # sets l_kernel = T in every layer
        for i, layer in enumerate(ref.s4_layers):
            perturb_block(layer, g, halfprec=True)
        for p in list(ref.encoder.parameters()) + list(ref.decoder.parameters()):
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
            p.copy_(p.half().float())
        for norm in ref.norms:
            norm.weight.copy_((1 + torch.randn(H, generator=g) * 0.3).half().float())
            norm.bias.copy_((torch.randn(H, generator=g) * 0.2).half().float())
    inp = torch.randn(T, 1, generator=g).numpy()
    y32, y64 = run_pair(lambda m, x: m(x[None])[0], ref, inp)
    layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
    for i, layer in enumerate(ref.s4_layers):
        k = layer.layer.kernel
        assert int(k.l_kernel) == T
        layers.append({"type": "residual", "prenorm": prenorm,
                       "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": H},
                       "body": [s4_layer_config(f"s4_layers.{i}", H, 2 * k.N, layer, k)]})
    layers.append({"type": "linear", "name": "decoder", "in": H, "out": 1})
    config = {"format": "ssmstream", "version": 1, "name": "s4-model-golden", "sample_rate": 0, "layers": layers,
              "description": f"state-spaces/s4@{COMMIT[:7]} example.py S4Model with S4Block(mode='dplr') golden"}
    tensors = native_tensors(ref.state_dict(), np.float16)
    info = {"module": f"example.py S4Model(d_input=1, d_output=1, d_model={H}, n_layers={n_layers}, dropout=0, "
                      f"prenorm={prenorm}) with S4 = functools.partial(S4Block, mode='dplr') (all other S4Block/"
                      "SSMKernelDPLR arguments at their defaults: d_state=64, rank=1, init='legs', dt_transform='exp', "
                      "activation='gelu', final_act='glu'); `x = x.mean(dim=1)` removed from forward; weights rounded "
                      "to float16 before running (the file stores F16)"}
    return config, tensors, inp, y32, y64, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--s4-repo", default=reference.default_repo())
    ap.add_argument("--out-dir", default=os.path.join(HERE, "s4"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out_dir, exist_ok=True)
    R = {"repo": a.s4_repo, "s4": reference.s4_module(a.s4_repo)}
    s4 = R["s4"]
    g = torch.Generator().manual_seed(2024)
    cases = {
        # S4Block defaults: mode='dplr', d_state=64, init='legs', rank=1, dt_transform='exp', gelu, glu
        "s4_layer_default": lambda: layer_case(s4, g, 11, 16, 512),
        # LegT needs rank 2; per-state dt (dt_tie=False), softplus dt, n_ssm=2 (A, B, P shared by 8 channels)
        "s4_layer_legt_rank2": lambda: layer_case(s4, g, 12, 16, 400, d_state=32, init="legt", rank=2,
                                                  dt_tie=False, dt_transform="softplus", n_ssm=2),
        # no output linear, tanh
        "s4_layer_nofinal": lambda: layer_case(s4, g, 13, 8, 300, d_state=16, final_act=None, activation="tanh"),
        # Fourier init: modes at |eigenvalue| ~ 1 - 1e-6 (their float32 convolution is ~1e-3 off their float64)
        "s4_layer_fout": lambda: layer_case(s4, g, 15, 8, 300, d_state=16, init="fout"),
        # a realistic checkpoint: 4 layers, H=128, the reference defaults
        "s4_model_h128": lambda: model_case(R, g, 14, 128, 4, 1024, prenorm=False),
    }
    summary = {"reference": f"state-spaces/s4@{COMMIT}", "torch": torch.__version__, "tolerance": TOL, "cases": {}}
    for case, make in cases.items():
        config, tensors, inp, y32, y64, info = make()
        write_case(a.out_dir, case, config, tensors, inp, y32, y64, info)
        rms = float(np.sqrt(np.mean(y64 ** 2)))
        info.update({"T": int(inp.shape[0]), "rms_ref": rms,
                     "ref_f32_vs_f64": float(np.abs(y32 - y64).max() / max(1.0, rms))})
        summary["cases"][case] = info
        print(case, json.dumps(info))
    with open(os.path.join(a.out_dir, "s4_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
