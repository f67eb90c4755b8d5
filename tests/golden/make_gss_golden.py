#!/usr/bin/env python3
"""Golden files for the `gss` layer from a public GSS implementation: lucidrains/gated-state-spaces-pytorch, as
published on PyPI (`pip install gated-state-spaces-pytorch==0.1.0`; its `gss.py` classes GSS and DSS, run as is).

    python tests/golden/make_gss_golden.py [--out-dir tests/golden/gss]

Per case: <case>.model.safetensors (native; the GSS state_dict tensors under their own names, F16 to keep the files
small: the weights are rounded to float16 before the reference runs) and <case>.io.safetensors with `input`
[T, dim], `output` (their forward, float32: DSS kernel materialised, FFT convolution) and `output_f64` (their module
after .double()). Tolerance of the C++ test (tests/test_lti_b.cpp): max|ours - ref64| <= 1e-4 * max(1, RMS(ref64)).
"""
import argparse
import copy
import json
import os

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "gated-state-spaces-pytorch==0.1.0"


def perturb(m, g):
    """Lambda_real ~ log U[0.01, 0.5] (decay per step e^-0.01...e^-0.5), Lambda_imag ~ log U[0.01, 3] (the reference
    draws N(0, 1) for both, which decays within a few steps: kept in range but slower here to test long memory);
    LayerNorms 1 + N(0, 0.2^2), N(0, 0.1^2); everything else as initialised. Then all rounded to float16."""
    d = m.dss
    with torch.no_grad():
        d.Lambda_real.copy_(torch.log(torch.rand(d.Lambda_real.shape, generator=g) * 0.49 + 0.01))
        d.Lambda_imag.copy_(torch.log(torch.rand(d.Lambda_imag.shape, generator=g) * 2.99 + 0.01))
        for norm in (m.norm, d.norm):
            norm.weight.copy_(1 + torch.randn(norm.weight.shape, generator=g) * 0.2)
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=g) * 0.1)
        d.C_real.mul_(0.1)
        d.C_imag.mul_(0.1)
        for p in m.parameters():
            p.copy_(p.half().float())


def layer_cfg(name, m):
    assert not m.reverse_seq
    return {"type": "gss", "name": name, "dim": m.norm.weight.shape[0], "lambda_imag_exp": m.dss.dss_kernel_lambda_imag_exp}


def run_pair(fn, module, inp):
    with torch.no_grad():
        y32 = fn(module, torch.from_numpy(inp)).numpy()
        y64 = fn(copy.deepcopy(module).double(), torch.from_numpy(inp).double()).numpy()
    return np.ascontiguousarray(y32), np.ascontiguousarray(y64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(HERE, "gss"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    from gated_state_spaces_pytorch import GSS
    os.makedirs(a.out_dir, exist_ok=True)
    g = torch.Generator().manual_seed(55)
    cases = {
        # the reference defaults (dim_expansion_factor=4, dss_kernel_N=512, dss_kernel_H=256) at dim 32
        "gss_layer_default": dict(dims=[32], T=100, kw={}),
        # a 4-layer stack (their GatedStateSpacesLM stacks GSS blocks; each block carries its own residual),
        # dim 64 with smaller DSS sizes to keep the file small; Lambda_imag without exp
        "gss_stack4": dict(dims=[64] * 4, T=100, kw=dict(dim_expansion_factor=2, dss_kernel_N=64, dss_kernel_H=32,
                                                       dss_kernel_lambda_imag_exp=False)),
    }
    summary = {"reference": PACKAGE, "torch": torch.__version__, "cases": {}}
    for case, spec in cases.items():
        torch.manual_seed(len(case))
        blocks = torch.nn.Sequential(*[GSS(dim=d, **spec["kw"]) for d in spec["dims"]]).eval()
        for b in blocks:
            perturb(b, g)
        T, dim = spec["T"], spec["dims"][0]
        inp = torch.randn(T, dim, generator=g).numpy()
        y32, y64 = run_pair(lambda m, x: m(x[None])[0], blocks, inp)
        layers = [layer_cfg(str(i), b) for i, b in enumerate(blocks)]
        config = {"format": "ssmstream", "version": 1, "name": f"{case}-golden", "sample_rate": 0, "layers": layers,
                  "description": f"{PACKAGE} GSS golden (make_gss_golden.py)"}
        tensors = {k: np.ascontiguousarray(v.detach().numpy().astype(np.float16)) for k, v in blocks.state_dict().items()}
        save_file(tensors, os.path.join(a.out_dir, f"{case}.model.safetensors"), metadata={"ssmstream": json.dumps(config)})
        save_file({"input": np.ascontiguousarray(inp, np.float32), "output": y32.astype(np.float32), "output_f64": y64},
                  os.path.join(a.out_dir, f"{case}.io.safetensors"),
                  metadata={"golden": json.dumps({"reference": PACKAGE, "module": f"Sequential of GSS(dim={dim}, {spec['kw']})"})})
        rms = float(np.sqrt(np.mean(y64 ** 2)))
        info = {"module": f"{len(spec['dims'])} x GSS(dim={dim}, {spec['kw']})", "T": T, "rms_ref": rms,
                "ref_f32_vs_f64": float(np.abs(y32 - y64).max() / max(1.0, rms))}
        summary["cases"][case] = info
        print(case, json.dumps(info))
    with open(os.path.join(a.out_dir, "gss_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
